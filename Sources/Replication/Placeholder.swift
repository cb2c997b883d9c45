// Placeholder until the first real file of Replication lands.
