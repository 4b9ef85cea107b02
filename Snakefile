# genda-pse: personalized speech enhancement from a few seconds of a voice.
#
# Read the rule files top to bottom to follow one speaker from enrollment clip
# to its row in results/summary.md.

from snakemake.utils import min_version

min_version("9.0")


# config.yaml (the offline demo) is the default; a --configfile replaces it
# rather than being merged into it, so a setting never mixes the two.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/inputs.smk"
include: "rules/world.smk"
include: "rules/data.smk"
include: "rules/tts.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/analysis.smk"
include: "rules/export.smk"


rule all:
    input:
        get_final_output(),
