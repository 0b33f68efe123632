"""Running the method: device and precision, processes, compiling, an epoch's loop,
encoding with a model, a run's set-up, training to --epochs, resuming, evaluation,
indexing with a trained model; `start.run` is main_SPQ.py's run."""
