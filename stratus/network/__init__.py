"""The network service (Network v2.0, Neutron compatible): network-api, IPAM and its agents."""
