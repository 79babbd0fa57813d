from pathlib import Path

from django.core.management.base import BaseCommand

from tooling import benchmark


class Command(BaseCommand):
    help = (
        "Measure speed in a scratch database (created and dropped here), as ratios against "
        "a plain baseline in the same run. Sections: " + ", ".join(benchmark.SECTIONS)
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "sections", nargs="*", choices=[[], *benchmark.SECTIONS], help="default: all"
        )
        parser.add_argument("--names", type=int, default=100_000, help="names for the search test")
        parser.add_argument("--quick", action="store_true", help="small volumes, for a smoke test")
        parser.add_argument("--json", type=Path, help="also write the results as JSON here")

    def handle(self, *args, sections, names, quick, json, **options):
        report = benchmark.run(
            sections or list(benchmark.SECTIONS), self.stdout, names=names, quick=quick
        )
        if json:
            json.write_text(report.json())
