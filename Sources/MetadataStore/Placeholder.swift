// Placeholder until the first real file of MetadataStore lands.
