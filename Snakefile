# The ScoreMix / ReMix / MixDL reproduction study.
#
#   snakemake --profile profiles/slurm                      # the paper study on SLURM
#   snakemake --cores 2 --configfile config/demo.yaml       # the embedded demo, on CPU
#
# The config is the experiment grid (see config/config.yaml and workflow/schemas/).

from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/scorenet.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/oneshot_common.smk"
include: "workflow/rules/oneshot.smk"
include: "workflow/rules/remix_tasks_common.smk"
include: "workflow/rules/remix_tasks.smk"
include: "workflow/rules/translation_common.smk"
include: "workflow/rules/translation.smk"


rule all:
    input:
        all_targets(),
    default_target: True
