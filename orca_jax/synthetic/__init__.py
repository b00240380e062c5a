"""A synthetic reasoning world for the quickstart and tests: procedurally generated task
families in the spirit of BIG-Bench Hard (`families`), programmatic teachers of two
qualities answering in several strategies (`teachers`), trace files in the Orca 1 / Orca 2
recipes (`trace_generation`), held-out sets in BBH's layout (`eval_sets`) and a BPE
tokenizer trained on the traces (`tokenizer`)."""
