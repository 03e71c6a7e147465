"""GPUs per AWS instance type (docs/design.md §6 `gpus_on_instance`), family by family, each with the
AWS page it comes from. SageMaker's `ml.<type>` instances (training jobs, HyperPod clusters) are the
same hardware as the EC2 type of that name, so each EC2 entry is also listed with the `ml.` prefix
(a prefixed name SageMaker does not sell is harmless: it never appears in a bill).

An instance type not listed falls back to the number of distinct GPUs seen on the instance. Types
with fractional GPUs (g6f) are left out on purpose: a fraction of a GPU is not a GPU count, and the
GPUs seen are the right capacity there.
"""

from __future__ import annotations

# The per-type GPU counts in every source below are the "GPUs" / "Accelerators" column of the
# family's specification table; the one AWS-wide table is
# https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html (Accelerated computing: "Accelerators").
EC2_SPECS = "https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html"

FAMILIES: dict[str, tuple[str, dict[str, int]]] = {
    # family: (source, {instance type: GPUs})
    "p2": (EC2_SPECS + " (P2, previous generation)", {"p2.xlarge": 1, "p2.8xlarge": 8, "p2.16xlarge": 16}),
    "p3": ("https://aws.amazon.com/ec2/instance-types/p3/",
           {"p3.2xlarge": 1, "p3.8xlarge": 4, "p3.16xlarge": 8, "p3dn.24xlarge": 8}),
    "p4d": ("https://aws.amazon.com/ec2/instance-types/p4/", {"p4d.24xlarge": 8}),
    "p4de": ("https://aws.amazon.com/ec2/instance-types/p4/", {"p4de.24xlarge": 8}),
    "p5": ("https://aws.amazon.com/ec2/instance-types/p5/", {"p5.4xlarge": 1, "p5.48xlarge": 8}),
    "p5e": ("https://aws.amazon.com/ec2/instance-types/p5/", {"p5e.48xlarge": 8}),
    "p5en": ("https://aws.amazon.com/ec2/instance-types/p5/", {"p5en.48xlarge": 8}),
    "p6": ("https://aws.amazon.com/ec2/instance-types/p6/",
           {"p6-b200.48xlarge": 8, "p6-b300.48xlarge": 8, "p6e-gb200.36xlarge": 4}),
    "g3": (EC2_SPECS + " (G3, previous generation)",
           {"g3s.xlarge": 1, "g3.4xlarge": 1, "g3.8xlarge": 2, "g3.16xlarge": 4}),
    "g4dn": ("https://aws.amazon.com/ec2/instance-types/g4/",
             {"g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g4dn.4xlarge": 1, "g4dn.8xlarge": 1, "g4dn.16xlarge": 1,
              "g4dn.12xlarge": 4, "g4dn.metal": 8}),
    "g4ad": ("https://aws.amazon.com/ec2/instance-types/g4/",
             {"g4ad.xlarge": 1, "g4ad.2xlarge": 1, "g4ad.4xlarge": 1, "g4ad.8xlarge": 2, "g4ad.16xlarge": 4}),
    "g5": ("https://aws.amazon.com/ec2/instance-types/g5/",
           {"g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.8xlarge": 1, "g5.16xlarge": 1,
            "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8}),
    "g5g": ("https://aws.amazon.com/ec2/instance-types/g5g/",
            {"g5g.xlarge": 1, "g5g.2xlarge": 1, "g5g.4xlarge": 1, "g5g.8xlarge": 1, "g5g.16xlarge": 2,
             "g5g.metal": 2}),
    "g6": ("https://aws.amazon.com/ec2/instance-types/g6/",
           {"g6.xlarge": 1, "g6.2xlarge": 1, "g6.4xlarge": 1, "g6.8xlarge": 1, "g6.16xlarge": 1,
            "g6.12xlarge": 4, "g6.24xlarge": 4, "g6.48xlarge": 8}),
    "gr6": ("https://aws.amazon.com/ec2/instance-types/g6/", {"gr6.4xlarge": 1, "gr6.8xlarge": 1}),
    "g6e": ("https://aws.amazon.com/ec2/instance-types/g6e/",
            {"g6e.xlarge": 1, "g6e.2xlarge": 1, "g6e.4xlarge": 1, "g6e.8xlarge": 1, "g6e.16xlarge": 1,
             "g6e.12xlarge": 4, "g6e.24xlarge": 4, "g6e.48xlarge": 8}),
}  # fmt: skip

# SageMaker AI instance types (https://aws.amazon.com/sagemaker/pricing/, "Instance details"): the
# accelerated `ml.` types are the EC2 hardware of the same name.
SAGEMAKER_PREFIX = "ml."

EC2_GPUS: dict[str, int] = {name: gpus for _, types in FAMILIES.values() for name, gpus in types.items()}
GPUS_PER_INSTANCE: dict[str, int] = {**EC2_GPUS, **{SAGEMAKER_PREFIX + k: v for k, v in EC2_GPUS.items()}}


def gpus_of(instance_type: str | None) -> int | None:
    """GPUs of an EC2 or SageMaker instance type (any case), or None when the table has no count."""
    return None if instance_type is None else GPUS_PER_INSTANCE.get(instance_type.strip().lower())
