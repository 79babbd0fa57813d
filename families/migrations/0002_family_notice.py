"""The notice shown on the public form (its hash is stored with every request)."""

import hashlib

from django.db import migrations

TEXTS = {
    "en": (
        "What happens with your request. Passage keeps what you write here encrypted; only "
        "the staff who handle family requests can read it. We will not tell you whether we "
        "know the person you are looking for. If we can, we ask them whether they want contact "
        "with you; nothing about them is shared with you unless they agree. Your request is "
        "deleted one year after it is closed, or at once if you withdraw it with your "
        "reference and secret."
    ),
    "fa": (
        "درخواست شما چه می‌شود. گذرگاه آنچه را اینجا می‌نویسید به‌صورت رمزگذاری‌شده نگه می‌دارد؛ "
        "فقط کارکنانی که به درخواست‌های خانواده‌ها رسیدگی می‌کنند می‌توانند آن را بخوانند. به شما "
        "نمی‌گوییم که آیا فردی را که به دنبالش هستید می‌شناسیم یا نه. اگر بتوانیم، از او می‌پرسیم "
        "که آیا می‌خواهد با شما در تماس باشد؛ بدون موافقت او هیچ چیزی درباره‌ی او به شما گفته "
        "نمی‌شود. درخواست شما یک سال پس از بسته شدن پاک می‌شود، یا همان لحظه که آن را با شماره و "
        "رمز خود پس بگیرید."
    ),
}


def seed(apps, schema_editor):
    Notice = apps.get_model("contacts", "NoticeText")
    for language, text in TEXTS.items():
        Notice.objects.get_or_create(
            purpose="family_request", language=language, version=1,
            defaults={"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()})


class Migration(migrations.Migration):
    dependencies = [("families", "0001_initial"), ("contacts", "0002_consent_ledger")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
