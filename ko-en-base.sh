#!/usr/bin/env bash
# Reproduce the Korean-English model of README "Results": build its data from ../shared/data, train
# configs/ko-en-base.yaml, and evaluate it against Korean BM25 and the dense teacher (plus their hybrids).
# On 2 CPU cores, measured on idle machines: 14.6-37.5 min of data building (most of it the dense teacher scoring
# distillation lists: KorQuAD paragraphs 4-8, MS MARCO-ko passages 4.5-10, ko->en 3-7.5, en->ko 1, eval splits 4-8),
# under 1 min building the backbone on first use, 61-66 min of training (1,100 steps, length-grouped encoding: 3.3-3.6
# s a step with bf16 on EPYCs with AVX512-BF16; ~97 min at 5.3 s in fp32 on an AVX2-only EPYC, where run_train.py
# falls back to fp32) and 9.3-20 min of evaluation without the dense baseline (it embeds every benchmark corpus,
# and adds more); a GPU shortens the training. Set up the venv first (quickstart.sh does).
set -euo pipefail
cd "$(dirname "$0")"
MODEL_DIR="${MODEL_DIR:-outputs/ko-en-base}"  # trained, then evaluated; extra arguments go to run_train.py
case " $* " in *" --output_dir"*)
  echo "ko-en-base.sh: set MODEL_DIR=... instead of --output_dir (the evaluation reads the same folder)" >&2; exit 2;; esac
DATA_DIR="${DATA_DIR:-../shared/data}"
. .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 TOKENIZERS_PARALLELISM=false

OUT=data/ko-en
build() { [ -f "$OUT/$1/$2/card.md" ] || python -m builders build "$1" --config "$2" --data_dir "$DATA_DIR" --output_dir "$OUT/$1" "${@:3}"; }
# Teacher: Korean BM25 + dense, min-max normalised per list (OpenSearch's hybrid), so exact matches keep their pull.
# All four pools, ko->en included (its English passages cost 7.5 min of the teacher on 2 cores; en->ko lists reuse
# the Korean passages' embeddings): without them cross-lingual retrieval fell from 0.53 to 0.45 (experiments.md).
build distillation distillation --set teacher=ensemble
# KorSTS and KLUE-STS (captions, headlines, forum sentences) stay out of training: korsts-ret is the held-out domain;
# xnli-ret (MultiNLI's genres: government reports, letters, speech, fiction) is one no source covers.
build triplets code_switched --max_per_source 4000 \
  --set "sources=[korquad, msmarco_ko, msmarco_koen, msmarco_enko, chatbot_qa, question_pair, parallel_news, parallel_jhe]"
build term_pairs term_pairs --max_per_source 4000
[ -f "$OUT/benchmarks/xnli-ret/corpus.jsonl" ] || python -m builders build benchmark --config all --data_dir "$DATA_DIR" --output_dir "$OUT/benchmarks"
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0

python run_train.py configs/ko-en-base.yaml --output_dir "$MODEL_DIR" --resume_from_checkpoint auto "$@"
[ -f "$OUT/idf.json" ] || python -m builders idf --tokenizer "$MODEL_DIR" --output "$OUT/idf.json" --data_dir "$DATA_DIR" --corpus korquad msmarco_ko msmarco_en
python run_eval.py --model "$MODEL_DIR" --benchmark korquad-dev-ret msmarco-ko msmarco-koen msmarco-enko korsts-ret \
  xnli-ret --benchmark-dir "$OUT/benchmarks" --baseline bm25 dense --hybrid --term-pairs "$OUT/term_pairs" \
  --max-seq-length 512 --output "$MODEL_DIR"/eval
# The same model with queries cut to their 40 largest weights, and with inference-free IDF queries (cached documents).
python run_eval.py --model "$MODEL_DIR" --doc-only-idf "$OUT/idf.json" --query-top-k 40 \
  --benchmark korquad-dev-ret msmarco-ko msmarco-koen msmarco-enko korsts-ret xnli-ret --benchmark-dir "$OUT/benchmarks" \
  --hybrid --max-seq-length 512 --cache-dir "$MODEL_DIR"/eval/cache --latency-queries 0 --output "$MODEL_DIR"/eval-query-top40
