"""Deployment: OpenSearch ML Commons zips and register configs, ONNX, the HF hub layout, feature naming and the
OpenSearch client helpers. Imports `training` (the model) and `builders.contracts` (the corpus contract), never
`eval`."""
