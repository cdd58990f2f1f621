package kecscluster

import (
	"encoding/json"
	"time"
)

// Config configures a Manager. Zero values mean "default": empty strings and nil
// pointers fall back to the environment (KECS_CLUSTER_PROVIDER, KECS_CONTAINER_MODE,
// KECS_KUBECONFIG_PATH, KECS_K3S_IMAGE (k3d) / KECS_KIND_IMAGE (kind),
// KECS_LB_IMAGE / KECS_KIND_LB_IMAGE, KECS_REGISTRY_IMAGE, KECS_PRIVILEGED,
// DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_CONFIG, DOCKER_CONTEXT)
// and then to the defaults. A set field always wins over the
// environment.
type Config struct {
	Provider       string  `json:"provider,omitempty"`       // "k3d" (default) or "kind"
	ContainerMode  *bool   `json:"containerMode,omitempty"`  // nil = $KECS_CONTAINER_MODE; KECS runs inside a container
	KubeconfigPath string  `json:"kubeconfigPath,omitempty"` // a directory for <cluster>.config files
	HostAddress    string  `json:"hostAddress,omitempty"`    // extra name/IP the API certificate covers
	Image          string  `json:"image,omitempty"`          // node image ("" = $KECS_K3S_IMAGE or $KECS_KIND_IMAGE, else rancher/k3s / kindest/node)
	DockerHost     string  `json:"dockerHost,omitempty"`     // unix:// or tcp:// address (see Docker* below)
	APIHostIP      string  `json:"apiHostIp,omitempty"`      // where the API port is published (127.0.0.1; 0.0.0.0 for a remote engine)
	NamePrefix     *string `json:"namePrefix,omitempty"`     // nil = "kecs-"
	Privileged     *bool   `json:"privileged,omitempty"`     // nil = $KECS_PRIVILEGED, else true (k3s needs it)
	LBImage        string  `json:"lbImage,omitempty"`        // load balancer image (k3d: ghcr.io/k3d-io/k3d-proxy:5.8.3; kind: envoy)
	RegistryImage  string  `json:"registryImage,omitempty"`  // registry image (docker.io/library/registry:2)
	// EnableRegistry gives every cluster KECS's shared registry "kecs-registry"
	// (created on first use, never deleted with a cluster), mirrored as
	// localhost:<RegistryPort> and registry.kecs.local:<RegistryPort>, wired in
	// before the nodes start (k3d provider).
	EnableRegistry bool `json:"enableRegistry,omitempty"`
	RegistryPort   int  `json:"registryPort,omitempty"` // host port of the shared registry (5000)
	// DockerTLSVerify speaks TLS to a tcp:// engine, verified against ca.pem and
	// presenting cert.pem/key.pem from DockerCertPath. nil = whether
	// $DOCKER_TLS_VERIFY is set (to anything, as the Docker CLI reads it).
	DockerTLSVerify *bool `json:"dockerTlsVerify,omitempty"`
	// DockerCertPath is the directory holding ca.pem, cert.pem and key.pem
	// ("" = $DOCKER_CERT_PATH, else the Docker config directory).
	DockerCertPath string `json:"dockerCertPath,omitempty"`
	// DockerConfig is the Docker CLI's config directory, for config.json's
	// currentContext and the contexts ("" = $DOCKER_CONFIG, else ~/.docker).
	DockerConfig string `json:"dockerConfig,omitempty"`
	// DockerContext names a Docker context to use instead of $DOCKER_HOST
	// ("" = $DOCKER_CONTEXT, else currentContext; "default" is the local
	// engine). Not together with DockerHost. With a remote engine (a tcp://
	// host that is not loopback) the API is published on 0.0.0.0 and the
	// kubeconfig names the engine's host, unless APIHostIP is set.
	DockerContext string `json:"dockerContext,omitempty"`
}

// RegistryCreate describes a registry to create. HostPort 0 means 5000;
// HostIP "" means 127.0.0.1 (an unauthenticated registry on every interface
// would serve anyone who can reach the machine).
type RegistryCreate struct {
	Name     string   `json:"name"` // the container name, verbatim
	HostPort int      `json:"hostPort,omitempty"`
	HostIP   string   `json:"hostIp,omitempty"`
	Aliases  []string `json:"aliases,omitempty"` // more names on cluster networks
}

// RegistryOptions are the registries a cluster create makes or uses (k3d's
// --registry-create, --registry-use).
type RegistryOptions struct {
	Create *RegistryCreate `json:"create,omitempty"`
	Use    []string        `json:"use,omitempty"`
}

// RegistryInfo describes one registry container.
type RegistryInfo struct {
	Name     string   `json:"name"`
	Image    string   `json:"image"`
	HostIP   string   `json:"hostIp"`
	HostPort int      `json:"hostPort"`
	Running  bool     `json:"running"`
	Cluster  string   `json:"cluster"` // the cluster whose create made it ("" standalone)
	Aliases  []string `json:"aliases"`
}

// PortMapping publishes a node port on the host.
type PortMapping struct {
	HostPort      int    `json:"hostPort,omitempty"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"` // tcp (default), udp, sctp
	HostIP        string `json:"hostIp,omitempty"`
	// "loadbalancer" (k3d's @loadbalancer: every server and agent), "server:0",
	// "agent:1", ... Default: the load balancer when the cluster has one. In
	// PortMappings it names the container publishing the port.
	Node string `json:"node,omitempty"`
}

// portInfo is the library's description of one published mapping.
type portInfo struct {
	HostIP        string `json:"hostIp"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	Container     string `json:"container"`
	Added         bool   `json:"added"`
}

func (p portInfo) mapping() PortMapping {
	return PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: p.Protocol, HostIP: p.HostIP, Node: p.Container}
}

// VolumeMount mounts a host path or a named volume into every node.
type VolumeMount struct {
	Source        string `json:"source"`
	ContainerPath string `json:"containerPath"`
	ReadOnly      bool   `json:"readOnly,omitempty"`
}

// CreateOptions shape a new cluster. Zero values mean the defaults: 1 server,
// 0 agents, the manager's image, a free API port (chosen once, kept across
// restarts), k3d's server load balancer, a 2-minute timeout.
type CreateOptions struct {
	Servers int
	Agents  int
	Image   string
	K3sArgs []string
	Env     map[string]string
	Labels  map[string]string
	Ports   []PortMapping
	Volumes []VolumeMount
	APIPort int
	Timeout time.Duration
	NoWait  bool // return once server-0 is up instead of waiting for every node
	// NoLoadBalancer leaves out k3d's server load balancer (k3d's --no-lb):
	// server-0 publishes the API, and no port can be added while it runs.
	NoLoadBalancer bool
	// Registry wires registries into the cluster before its nodes start.
	Registry *RegistryOptions
}

// MarshalJSON writes the library's CreateOptions document.
func (o CreateOptions) MarshalJSON() ([]byte, error) {
	type wire struct {
		Servers   int               `json:"servers,omitempty"`
		Agents    int               `json:"agents,omitempty"`
		Image     string            `json:"image,omitempty"`
		K3sArgs   []string          `json:"k3sArgs,omitempty"`
		Env       map[string]string `json:"env,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
		Ports     []PortMapping     `json:"ports,omitempty"`
		Volumes   []VolumeMount     `json:"volumes,omitempty"`
		APIPort   int               `json:"apiPort,omitempty"`
		TimeoutMs int64             `json:"timeoutMs,omitempty"`
		WaitReady bool              `json:"waitReady"`
		LB        *bool             `json:"loadBalancer,omitempty"`
		Registry  *RegistryOptions  `json:"registry,omitempty"`
	}
	w := wire{o.Servers, o.Agents, o.Image, o.K3sArgs, o.Env, o.Labels, o.Ports, o.Volumes, o.APIPort, o.Timeout.Milliseconds(), !o.NoWait, nil, o.Registry}
	if o.NoLoadBalancer {
		off := false
		w.LB = &off
	}
	if w.Servers == 0 {
		w.Servers = 1
	}
	if o.Timeout > 0 && w.TimeoutMs == 0 {
		w.TimeoutMs = 1
	}
	return json.Marshal(w)
}

// NodeInfo is one node container.
type NodeInfo struct {
	Name  string `json:"name"`
	Role  string `json:"role"`  // server/agent (k3d), control-plane/worker (kind)
	State string `json:"state"` // Docker's state: running, exited, ...
}

// ClusterInfo describes a cluster. The first six fields match KECS's ClusterInfo.
type ClusterInfo struct {
	Name           string            `json:"name"`
	Status         string            `json:"status"`  // running, stopped, degraded
	Running        bool              `json:"running"` // every container runs
	Provider       string            `json:"provider"`
	NodeCount      int               `json:"nodeCount"`
	Version        string            `json:"version,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	KubeconfigPath string            `json:"kubeconfigPath"`
	APIHost        string            `json:"apiHost"`
	APIPort        int               `json:"apiPort"`
	Nodes          []NodeInfo        `json:"nodes"`
	LoadBalancer   string            `json:"loadBalancer,omitempty"` // k3d-<c>-serverlb
	Ports          []PortMapping     `json:"-"`                      // host-port mappings, the API's excepted
}

// UnmarshalJSON fills Ports from the library's port descriptions.
func (c *ClusterInfo) UnmarshalJSON(b []byte) error {
	type plain ClusterInfo
	var w struct {
		plain
		Ports []portInfo `json:"ports"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = ClusterInfo(w.plain)
	for _, p := range w.Ports {
		c.Ports = append(c.Ports, p.mapping())
	}
	return nil
}
