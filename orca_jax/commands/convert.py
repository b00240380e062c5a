"""`orca-jax convert`: any loadable model -> a Hugging Face folder or an orca-jax (orbax) model folder."""


def add_arguments(parser):
    parser.add_argument("--from", dest="source", required=True,
                        help="HF folder, .gguf file, or orca-jax model folder / MODEL_DIR")
    parser.add_argument("--to", dest="target", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--format", choices=("hf", "orbax"), default="hf",
                        help="hf: safetensors + config.json + tokenizer (loadable by transformers); "
                             "orbax: this project's model folder")


def run(args):
    from orca_jax.model.loading import load_model
    from orca_jax.model.export import export_model

    export_model(load_model(args.source), args.target, args.format)
    print(f"wrote {args.format} model to {args.target}")
