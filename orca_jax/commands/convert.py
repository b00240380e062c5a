"""`orca-jax convert`: any loadable model (or a t5x checkpoint of the adapted decoder) -> a Hugging
Face folder, an orca-jax (orbax) model folder, or a t5x checkpoint (orca_jax/t5x/checkpoints.py)."""


def add_arguments(parser):
    parser.add_argument("--from", dest="source", required=True,
                        help="HF folder, .gguf file, orca-jax model folder / MODEL_DIR, or t5x MODEL_DIR / "
                             "checkpoint_<step> folder")
    parser.add_argument("--to", dest="target", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--format", choices=("hf", "orbax", "t5x"), default="hf",
                        help="hf: safetensors + config.json + tokenizer (loadable by transformers); "
                             "orbax: this project's model folder; t5x: checkpoint_0 for t5x's "
                             "INITIAL_CHECKPOINT_PATH (+ model_config.json, tokenizer/)")


def run(args):
    from orca_jax.model.loading import load_model
    from orca_jax.model.export import export_model
    from orca_jax.t5x.checkpoints import is_t5x_dir, load_t5x_model, save_t5x_checkpoint

    model = load_t5x_model(args.source) if is_t5x_dir(args.source) else load_model(args.source)
    if args.format == "t5x":
        save_t5x_checkpoint(model, args.target)
    else:
        export_model(model, args.target, args.format)
    print(f"wrote {args.format} model to {args.target}")
