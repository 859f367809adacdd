#!/usr/bin/env bash
# Set up and run the main job on the offline default: build data from ../shared/data, train configs/quickstart.yaml
# on CPU, and evaluate the model against Korean BM25 (and their hybrid) on held-out KorQuAD articles and on
# Korean queries over English MS MARCO passages; print the expansions of a few Korean queries.
set -euo pipefail
cd "$(dirname "$0")"
MODEL_DIR="${MODEL_DIR:-outputs/quickstart}"  # trained, then evaluated; extra arguments go to run_train.py
case " $* " in *" --output_dir"*)
  echo "quickstart.sh: set MODEL_DIR=... instead of --output_dir (the evaluation reads the same folder)" >&2; exit 2;; esac
DATA_DIR="${DATA_DIR:-../shared/data}"
if [ ! -d .venv ]; then
  python3 -m venv .venv
  . .venv/bin/activate
  pip install -q --upgrade pip
  pip install -q torch==2.13.0
  pip install -q -c <(echo torch==2.13.0) -r requirements.txt
else
  . .venv/bin/activate
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false

OUT=data/quickstart
[ -f "$OUT/triplets/README.md" ] || python -m builders build triplets --data_dir "$DATA_DIR" --output_dir "$OUT/triplets" --max_per_source 400
[ -f "$OUT/term_pairs/README.md" ] || python -m builders build term_pairs --data_dir "$DATA_DIR" --output_dir "$OUT/term_pairs" --max_per_source 2000
for bench in korquad-dev-ret msmarco-koen; do
  [ -f "$OUT/benchmarks/$bench/corpus.jsonl" ] || python -m builders build benchmark --config "$bench" --data_dir "$DATA_DIR" --output_dir "$OUT/benchmarks"
done

python run_train.py configs/quickstart.yaml --output_dir "$MODEL_DIR" "$@"
python run_eval.py --model "$MODEL_DIR" --benchmark korquad-dev-ret msmarco-koen --benchmark-dir "$OUT/benchmarks" \
  --baseline bm25 --hybrid --max-queries 300 --term-pairs "$OUT/term_pairs" --output "$MODEL_DIR/eval" \
  --show-expansions "추천 시스템" "머신러닝" "검색 엔진"
