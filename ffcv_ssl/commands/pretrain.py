"""``ffcv-ssl pretrain CONFIG [key=value ...]``: SimCLR / supervised / BYOL / MoCo pretraining."""
import argparse

from . import register_command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML config, e.g. configs/pretrain/simclr_rn50.yaml (schema: ffcv_ssl/train/config.py)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides, e.g. data.train=/data/inat21_train.beton data.batch_size=1024 optim.epochs=100 "
                        "objective.name=byol model.arch=resnet50 out_dir=runs/x. SimCLR v2 defaults: batch 4096, "
                        "LARS lr 0.3 x batch/256, temperature 0.1; use optim.lr_scaling=sqrt optim.lr=0.075 below 1024")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


@register_command("pretrain", help="pretrain a backbone (SimCLR, supervised, BYOL, MoCo) on a beton",
                  description="Pretrain a timm backbone with a registered objective on a .beton. Resumes from the "
                              "newest checkpoint in out_dir; multi-GPU with torchrun --nproc-per-node N or under "
                              "srun (one process per GPU). Writes config.yaml, metrics.jsonl, checkpoints/, "
                              "backbone.pth and summary.json to out_dir.")
def run(args: argparse.Namespace) -> int:
    from ..config import config_to_yaml, load_config
    from ..train.config import TrainConfig

    cfg = load_config(TrainConfig, args.config, args.overrides)
    if args.print_config:
        print(config_to_yaml(cfg))
        return 0
    from ..train.engine import pretrain

    pretrain(cfg)
    return 0
