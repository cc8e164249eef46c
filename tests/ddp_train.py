"""Run the toy family under torchrun (used by test_trainer's DDP test): ddp_train.py DATA OUT KEY=VALUE..."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from toy_task import ToyTask  # noqa: E402

from drivesim_carla.training.core.config import load_config, parse_overrides  # noqa: E402
from drivesim_carla.training.core.data import Sources  # noqa: E402
from drivesim_carla.training.core.trainer import Trainer  # noqa: E402

if __name__ == "__main__":
    data, out, *sets = sys.argv[1:]
    config = load_config(ToyTask.Config, None, parse_overrides(sets))
    Trainer(ToyTask, config, out, Sources((Path(data),))).fit()
