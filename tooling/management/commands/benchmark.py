from pathlib import Path

from django.core.management.base import BaseCommand

from tooling import benchmark


class Command(BaseCommand):
    help = (
        "Measure speed in scratch databases (created and dropped here), as ratios against "
        "plain-Django baselines of the same shape in the same run. Sections: "
        + ", ".join(benchmark.DEFAULT)
        + " (default: all); "
        + ", ".join(benchmark.GROUPS)
        + " run parts of growth."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "sections",
            nargs="*",
            choices=[[], *benchmark.SECTIONS, *benchmark.GROUPS],
            help="default: " + " ".join(benchmark.DEFAULT),
        )
        parser.add_argument("--names", type=int, default=100_000, help="names for the search test")
        parser.add_argument(
            "--sizes",
            type=lambda text: tuple(int(n) for n in text.split(",")),
            help="case counts of the growth table, e.g. 1000,10000 (default 1000,10000,100000)",
        )
        parser.add_argument("--quick", action="store_true", help="small volumes, for a smoke test")
        parser.add_argument("--json", type=Path, help="also write the results as JSON here")
        parser.add_argument(
            "--markdown", type=Path, help="also write the README's tables (with the date) here"
        )

    def handle(self, *args, sections, names, sizes, quick, json, markdown, **options):
        report = benchmark.run(
            sections or benchmark.DEFAULT, self.stdout, names=names, sizes=sizes, quick=quick
        )
        if json:
            json.write_text(report.json())
        if markdown:
            markdown.write_text(report.markdown())
