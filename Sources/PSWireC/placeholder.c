// Placeholder until the wire schema is generated.
