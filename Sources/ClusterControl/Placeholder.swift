// Placeholder until the first real file of ClusterControl lands.
