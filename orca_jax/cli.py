"""`orca-jax <command>`: thin dispatch to orca_jax.commands.<name>; no logic here.

Each command module defines `add_arguments(parser)` and `run(args) -> int | None`.
Modules are imported only when their command runs, so `--help` stays fast.
"""

import argparse
import importlib
import sys

from orca_jax.errors import UserError

# command name -> (module under orca_jax.commands, one-line help)
COMMANDS = {
    "quickstart": ("quickstart", "the whole Orca pipeline on a synthetic world on a CPU: traces, curriculum, student vs shallow baseline"),
    "reproduce": ("reproduce", "the papers' ablations in miniature on the synthetic world, mean and std over seeds"),
    "inspect": ("inspect", "print packed rows of a prepared task: segments, loss-weighted tokens, lengths, packing stats"),
    "prepare": ("prepare", "run a seqio trace Task/Mixture once and cache tokenized examples for training"),
    "generate": ("generate", "one chat reply from a model (HF folder, .gguf or orca-jax model folder)"),
    "score": ("score", "per-token log-probabilities of a text under a model, as JSON"),
    "convert": ("convert", "convert a model to a Hugging Face folder or an orca-jax (orbax) model folder"),
    "validate-traces": ("validate_traces", "read a trace file as training would; counts per source/system/strategy and every bad record"),
    "train": ("train", "train a student from gin files (t5x-style --gin_file / --gin.NAME=VALUE)"),
    "plan": ("plan", "compile a gin run ahead of time for N simulated devices: memory per device, FLOPs, step and stage times"),
    "eval": ("eval", "zero-shot BBH / AGIEval / GSM8K with official-equivalent scoring, or re-score a predictions file"),
    "decontaminate": ("decontaminate", "benchmark test items found in teacher traces (13-gram overlap), optionally filtered out"),
    "answer-prompts": ("answer_prompts", "a model's answers to open-ended prompt sets (Vicuna-80, Self-Instruct), for judge"),
    "judge": ("judge", "GPT-4-as-judge: candidate answers scored against references, both orders, in percent"),
    "serve": ("serve", "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/models) for a local model"),
    "generate-traces": ("generate_traces", "ask a teacher (API URL or local model) for explanation traces, resumably"),
}


def _build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orca-jax", description="Orca-style explanation tuning in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:  # only import the module that will run
            importlib.import_module(f"orca_jax.commands.{module_name}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    module = importlib.import_module(f"orca_jax.commands.{COMMANDS[args.command][0]}")
    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"orca-jax {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
