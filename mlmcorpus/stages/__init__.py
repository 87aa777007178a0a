"""Stage commands as library functions, and the Arrow IPC stream between them (:mod:`.stream`)."""

from mlmcorpus.stages.run import run_mask, run_pairs, run_stream, run_write
from mlmcorpus.stages.tokenizer import TrainResult, run_tokenizer_encode, run_tokenizer_train

__all__ = ["run_stream", "run_pairs", "run_mask", "run_write", "run_tokenizer_train", "run_tokenizer_encode", "TrainResult"]
