"""Test driver around run_train: trains like the CLI, optionally kills itself (SIGKILL) at a step, then saves
this rank's weights before and after training, the log history, and the names of the threads still running after
training (no collective backend thread may outlive run_train.train), so tests can compare runs. Usage:
python tests/train_worker.py RESULT_DIR [--kill_at_step N] -- RUN_TRAIN_ARGS..."""
import glob
import json
import os
import signal
import sys

import torch
from transformers import TrainerCallback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import run_train  # noqa: E402


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def thread_names() -> list:
    names = []
    for comm in glob.glob("/proc/self/task/*/comm"):
        try:
            with open(comm) as fh:
                names.append(fh.read().strip())
        except OSError:  # a thread (tqdm's monitor) that ended meanwhile
            pass
    return names


if __name__ == "__main__":
    split = sys.argv.index("--")
    own, argv = sys.argv[1:split], sys.argv[split + 1:]
    result_dir = own[0]
    trainer, _ = run_train.build_trainer(argv)
    rank = int(os.environ.get("RANK", 0))
    os.makedirs(result_dir, exist_ok=True)
    torch.save({k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()},
               os.path.join(result_dir, f"init{rank}.pt"))
    if "--kill_at_step" in own:
        trainer.add_callback(KillAt(int(own[own.index("--kill_at_step") + 1])))
    run_train.train(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(result_dir, f"rank{rank}.pt"))
    with open(os.path.join(result_dir, f"log{rank}.json"), "w") as fh:
        json.dump(trainer.state.log_history, fh)
    with open(os.path.join(result_dir, f"threads{rank}.json"), "w") as fh:
        json.dump(thread_names(), fh)
