//! ESC domain: escadm commands, their output parsers and the SSH transport. Knows nothing of Kubernetes.
