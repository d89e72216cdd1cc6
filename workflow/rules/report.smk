# Tables and figures: pandas/seaborn over the metric records, training curves and samples.

localrules:
    table,
    figure,
    provenance,
    protocol,


rule table:
    input:
        records=layout_inputs,
        published=published_values,
    output:
        csv=report(
            f"{R}/tables/{{layout}}.csv",
            caption="../report/table.rst",
            category=report_category,
            subcategory="{layout}",
            labels={"table": "{layout}", "format": "tidy csv"},
        ),
        md=f"{R}/tables/{{layout}}.md",
        tex=f"{R}/tables/{{layout}}.tex",
        ranking=f"{R}/tables/{{layout}}.ranking.csv",
    params:
        spec=lambda wc: spec_json(layout_spec(wc.layout)),
        published=published_option,
    conda:
        ENV
    log:
        f"{R}/logs/tables/{{layout}}.log",
    shell:
        "python -m mixgan table --spec {params.spec:q} --records {input.records:q} {params.published} "
        "--out-csv {output.csv:q} --out-md {output.md:q} --out-tex {output.tex:q} "
        "--out-ranking {output.ranking:q} > {log} 2>&1"


rule figure:
    input:
        files=layout_inputs,
        published=published_values,
    output:
        png=report(
            f"{R}/figures/{{layout}}.png",
            caption="../report/figure.rst",
            category=report_category,
            subcategory="{layout}",
            labels={"figure": "{layout}"},
        ),
        pdf=f"{R}/figures/{{layout}}.pdf",
    params:
        spec=lambda wc: spec_json(layout_spec(wc.layout)),
        published=published_option,
    conda:
        ENV
    log:
        f"{R}/logs/figures/{{layout}}.log",
    shell:
        "python -m mixgan figure --spec {params.spec:q} --inputs {input.files:q} "
        "{params.published} --out-png {output.png:q} --out-pdf {output.pdf:q} > {log} 2>&1"


rule provenance:
    input:
        used_weights(),
    output:
        report(
            f"{R}/report/provenance.html",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    params:
        config=spec_json(STUDY.config),
        source=" ".join(map(str, workflow.configfiles)) or "config/config.yaml",
        weights_dir=lambda wildcards, input: os.path.dirname(input[0]),
    conda:
        ENV
    log:
        f"{R}/logs/report/provenance.log",
    shell:
        "python -m mixgan provenance --config-json {params.config:q} --config-source {params.source:q} "
        "--weights-dir {params.weights_dir:q} --out {output:q} > {log} 2>&1"


rule protocol:
    input:
        rules=sorted(glob.glob("config/protocol/*.yaml")),
    output:
        md=report(
            f"{R}/report/protocol.md",
            caption="../report/protocol.rst",
            category="Provenance",
        ),
        csv=f"{R}/report/protocol.csv",
    params:
        config=spec_json(STUDY.config),
    conda:
        ENV
    log:
        f"{R}/logs/report/protocol.log",
    shell:
        "python -m mixgan protocol --config-json {params.config:q} --out-md {output.md:q} "
        "--out-csv {output.csv:q} > {log} 2>&1"
