// Package k3dcompat is a drop-in for KECS's host-side k3d manager
// (controlplane/internal/host/k3d.K3dClusterManager): the same type name,
// constructor, config, ClusterInfo and method signatures, run through the
// kecs-cluster library instead of k3d's Go module, the docker CLI and the k3d
// CLI. Standard library only.
//
// # Switching
//
// Change the import to
//
//	k3d "github.com/kecs-cluster/kecs-cluster/bindings/go/k3dcompat"
//
// and keep calling k3d.NewK3dClusterManager(&k3d.ClusterManagerConfig{...}).
// GetKubeClient and GetKubeConfig need client-go, which this package does not
// import; GetKubeconfig returns the kubeconfig YAML they are built from:
//
//	func restConfig(ctx context.Context, m *k3d.K3dClusterManager, name string) (*rest.Config, error) {
//		yaml, err := m.GetKubeconfig(ctx, name)
//		if err != nil {
//			return nil, err
//		}
//		return clientcmd.RESTConfigFromKubeConfig(yaml)
//	}
//
//	func kubeClient(ctx context.Context, m *k3d.K3dClusterManager, name string) (kubernetes.Interface, error) {
//		if m.IsTestMode() {
//			return fake.NewSimpleClientset(), nil
//		}
//		cfg, err := restConfig(ctx, m, name)
//		if err != nil {
//			return nil, err
//		}
//		return kubernetes.NewForConfig(cfg)
//	}
//
// # Behaviour
//
// Names: every method takes "<instance>" or "kecs-<instance>"; the cluster is
// kecs-<instance>, its containers k3d-kecs-<instance>-server-0 and
// k3d-kecs-<instance>-serverlb, its network k3d-kecs-<instance>: k3d's layout.
// Clusters KECS created with k3d before the switch have that layout, so
// ListClusters, StopCluster, StartCluster, DeleteCluster, GetKubernetesAPIPort
// and GetKubeconfig work on them too.
//
// CreateClusterWithPortMapping creates KECS's standard cluster: one server,
// k3s arguments --disable=traefik, --disable=servicelb,
// --disable=metrics-server, --disable-network-policy and
// --node-label=kecs.io/cluster=kecs-<instance>, env K3S_KUBECONFIG_MODE=666,
// the volume mounts bind-mounted on every node, each host port → node port
// pair published on server-0 as <nodePort>/tcp on 0.0.0.0, and k3d's server
// load balancer publishing the API on 0.0.0.0 (the port `kecs kubeconfig get`
// looks for). It returns once the API answers (at most 2 minutes). An existing
// cluster is not an error. CreateCluster does the same with KECS's default
// mappings 8080→30880 and 8443→30443, plus the ALB range start+i → 30800+i
// when AdditionalOptions has "albPortRangeStart" (and "albPortRangeEnd",
// default start+99). KECS's "optimized" spec (no load balancer, used in its
// test mode) is not reproduced: every cluster gets the standard spec.
//
// StopCluster stops the containers; StartCluster starts them again with their
// port bindings, volumes and API port (no delete and recreate, so KECS's
// restart workaround is never needed) and waits for the nodes.
// StartClusterWithPorts keeps every port the containers already publish and
// adds the missing ones through the load balancer (the library's
// AddPortMapping: every node, no restart); a host port already published for
// another node port is an error.
//
// DeleteCluster removes the containers, network, volumes and the kubeconfig
// files the library wrote; it never touches ~/.kube/config. A cluster that is
// already gone is success, and so is a delete whose clean-up failed after the
// cluster itself was removed.
//
// ListClusters lists only kecs-* clusters, with the prefix stripped from Name
// (KECS uses it as the instance name). IsClusterRunning and
// ClusterInfo.Running are true when any container of the cluster runs, the
// load balancer included; a missing cluster is (false, nil). ClusterExists is
// (false, nil) for anything absent, invalid names included. GetClusterInfo
// keeps Name as passed, Status "Running" or "Stopped", Version "unknown" when
// the API does not answer, Metadata k3d_cluster_name and image; NodeCount
// counts servers and agents (k3d also counted the load balancer). A missing
// cluster is an error saying it "does not exist" (errors.Is
// kecscluster.ErrNotFound).
//
// WaitForClusterReady waits until every node is Ready, for at most KECS's 2
// minutes or until ctx ends, whichever comes first; a cluster whose nodes are
// not running yet is waited for, not an error.
//
// GetKubeconfigPath is <KubeconfigPath>/kecs-<instance>.config, the file the
// library writes (KubeconfigPath defaults to $KECS_KUBECONFIG_PATH, then
// ~/.kube, or /kecs/kubeconfig in container mode); unlike KECS's host mode it
// is never the shared ~/.kube/config. GetHostKubeconfigPath is the
// .host.config next to it in container mode (the host's published port), else
// the same file.
//
// Config: an explicit config wins over the environment (ContainerMode false
// stays false with KECS_CONTAINER_MODE=true); a nil config reads
// KECS_CONTAINER_MODE as KECS does. The node image is K3dImage, else
// $KECS_K3S_IMAGE, else rancher/k3s:v1.31.4-k3s1. APIPort and RegistryPort
// are accepted and unused, as in KECS. The constructor never fails: errors
// such as HOME unset (no kubeconfig directory) or cgo missing are returned by
// the first call that needs the library.
//
// TestMode (SetTestMode or the config) behaves as KECS's for the methods
// here: ClusterExists is always (false, nil); GetClusterInfo returns mock info
// (Status "Running", Version "v1.31.4", one node); GetKubeconfig returns a
// kubeconfig for https://mock-cluster:6443 (KECS's mock rest.Config;
// IsTestMode lets a GetKubeClient adapter return a fake clientset). Everything
// else, CreateClusterWithPortMapping and GetKubernetesAPIPort included, stays
// real.
//
// EnableRegistry gives each cluster KECS's shared registry: the container
// kecs-registry (created on first use as a standalone registry, so no cluster
// delete removes it; host port RegistryPort, default 5000, on 127.0.0.1) is
// attached to the cluster network as kecs-registry and registry.kecs.local,
// and registries.yaml in every node mirrors localhost:<port>,
// kecs-registry:<port> and registry.kecs.local:<port> to it before the nodes
// first start. KECS's node restart, 5 s sleep, /etc/hosts edit through docker
// exec and CoreDNS patching by hand are not needed: CoreDNS's NodeHosts and the
// kube-public/local-registry-hosting ConfigMap are set through the API, and
// DeleteCluster disconnects the registry before the network goes.
//
// Unlike KECS's, every method is safe for concurrent use, the setters
// included.
package k3dcompat
