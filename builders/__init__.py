"""Data builders: HF `datasets` builders for term pairs, triplets, distillation lists and BEIR benchmarks, read
from raw sources (`--data_dir`) and exported as parquet + a dataset card. Owns the data contracts
(`builders.contracts`). Imports nothing else of the toolkit."""
