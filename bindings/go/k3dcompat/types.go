package k3dcompat

// VolumeMount is a host path bind-mounted into every node of a cluster
// (KECS's VolumeMount).
type VolumeMount struct {
	HostPath      string `json:"hostPath"`
	ContainerPath string `json:"containerPath"`
}

// ClusterManagerConfig has the fields and JSON names of KECS's
// ClusterManagerConfig.
type ClusterManagerConfig struct {
	// Provider is kept for KECS's JSON; this manager always runs k3d clusters.
	Provider string `json:"provider"`
	// ContainerMode: KECS runs in a container on the cluster's network, so
	// kubeconfigs name the server container instead of a host port.
	ContainerMode bool `json:"containerMode"`
	// KubeconfigPath is the directory the <cluster>.config files go to
	// (default $KECS_KUBECONFIG_PATH, then ~/.kube, or /kecs/kubeconfig in
	// container mode).
	KubeconfigPath string `json:"kubeconfigPath"`
	// HostAddress is an extra name or IP the API certificate covers.
	HostAddress string `json:"hostAddress"`
	// AdditionalOptions: KECS never reads it. This package reads the ALB host
	// port range from "albPortRangeStart" and "albPortRangeEnd" (numbers; End
	// defaults to Start+99), KECS's kubernetes.albPortRange* settings.
	AdditionalOptions map[string]interface{} `json:"additionalOptions"`
	// VolumeMounts are bind-mounted into every node of clusters created later.
	VolumeMounts []VolumeMount `json:"volumeMounts"`
	// APIPort is kept for KECS's JSON and not used, as in KECS: the API gets a
	// free host port at create, kept across stop and start.
	APIPort int `json:"apiPort"`
	// K3dImage is the node image (default $KECS_K3S_IMAGE, then
	// rancher/k3s:v1.31.4-k3s1).
	K3dImage string `json:"k3dImage"`
	// EnableRegistry asks for KECS's shared registry kecs-registry. Not wired
	// yet: creation goes on without it (see the package documentation).
	EnableRegistry bool `json:"enableRegistry"`
	// RegistryPort is kept for KECS's JSON; KECS does not use it either.
	RegistryPort int `json:"registryPort"`
	// TestMode turns ClusterExists, GetClusterInfo and GetKubeconfig into
	// stubs, as KECS's test mode does (see the package documentation).
	TestMode bool `json:"testMode"`
}

// ClusterInfo has the fields and JSON names of KECS's ClusterInfo.
type ClusterInfo struct {
	Name           string            `json:"name"`
	Status         string            `json:"status"` // "Running" or "Stopped"
	Provider       string            `json:"provider"`
	NodeCount      int               `json:"nodeCount"`
	Version        string            `json:"version"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	KubeconfigPath string            `json:"kubeconfigPath"`
	APIPort        int               `json:"apiPort"`
	// TraefikPort is always 0: KECS deploys Traefik itself now.
	TraefikPort int  `json:"traefikPort"`
	Running     bool `json:"running"` // at least one container of the cluster runs
}
