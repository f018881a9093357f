"""The model's blocks as the servers hold them: the verified block files as onnxruntime
sessions (main_path.py), block graphs joined into one (graphs.py), and the pruned
variants, kept loaded within a memory budget (variants.py)."""
