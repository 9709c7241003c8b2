"""Model deployments: one module per backend, each registered under the name cluster configs use."""
