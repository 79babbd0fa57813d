"""The consent ledger is append-only at the database; the first notice texts."""

from django.db import migrations

NOTICES = {
    "processing": (
        "Passage keeps what you tell us, encrypted, so that we can help you. Only the staff "
        "working on your case can read it, and every reading is recorded. You can ask to see "
        "it, correct it or have it deleted at any time.",
        "گذرگاه آنچه را به ما می‌گویید به‌صورت رمزگذاری‌شده نگه می‌دارد تا بتوانیم به شما کمک "
        "کنیم. فقط کارکنانی که روی پرونده‌ی شما کار می‌کنند می‌توانند آن را بخوانند و هر بار "
        "خواندن ثبت می‌شود. هر زمان بخواهید می‌توانید آن را ببینید، اصلاح کنید یا پاک کنید.",
    ),
    "tracing": (
        "You agree that we may compare family requests with your case. Nobody learns that you "
        "are our client: we ask you first about every request, and nothing is shared without "
        "your separate agreement.",
        "موافقت می‌کنید که درخواست‌های خانواده‌ها را با پرونده‌ی شما مقایسه کنیم. هیچ‌کس متوجه "
        "نمی‌شود که شما با ما در تماس هستید: درباره‌ی هر درخواست اول از شما می‌پرسیم و بدون "
        "موافقت جداگانه‌ی شما چیزی به اشتراک گذاشته نمی‌شود.",
    ),
    "relay": (
        "You agree that we pass messages between you and the named person. We read each "
        "message before passing it on and remove anything that could show where you are. You "
        "can stop this at any time, and waiting messages are then not delivered.",
        "موافقت می‌کنید که پیام‌ها را میان شما و فرد نام‌برده رد و بدل کنیم. هر پیام را پیش از "
        "فرستادن می‌خوانیم و هر چیزی را که نشان دهد شما کجا هستید حذف می‌کنیم. هر زمان بخواهید "
        "می‌توانید این را متوقف کنید و پیام‌های در انتظار دیگر فرستاده نمی‌شوند.",
    ),
    "share_contact": (
        "You agree that we give the named person the contact details you chose. Once given, "
        "they cannot be taken back. A second staff member approves it, and nothing is released "
        "before a waiting period.",
        "موافقت می‌کنید که اطلاعات تماسی را که انتخاب کرده‌اید به فرد نام‌برده بدهیم. پس از دادن، "
        "نمی‌توان آن را پس گرفت. یک همکار دیگر آن را تأیید می‌کند و پیش از یک دوره‌ی انتظار "
        "چیزی داده نمی‌شود.",
    ),
    "meet": (
        "You agree that we arrange a meeting with the named person, at a safe place we choose "
        "together. You can call it off at any time.",
        "موافقت می‌کنید که دیداری با فرد نام‌برده در جای امنی که با هم انتخاب می‌کنیم ترتیب "
        "دهیم. هر زمان بخواهید می‌توانید آن را لغو کنید.",
    ),
    "share_agency": (
        "You agree that we share the information you chose with the named agency, for the "
        "purpose we explained. We share no more than that.",
        "موافقت می‌کنید که اطلاعاتی را که انتخاب کرده‌اید برای هدفی که توضیح دادیم با نهاد "
        "نام‌برده به اشتراک بگذاریم. بیش از آن چیزی به اشتراک گذاشته نمی‌شود.",
    ),
    "photographs": (
        "You agree that photographs of you are kept in your case file, encrypted. They are "
        "never published.",
        "موافقت می‌کنید که عکس‌های شما به‌صورت رمزگذاری‌شده در پرونده‌تان نگه داشته شود. این "
        "عکس‌ها هرگز منتشر نمی‌شوند.",
    ),
}


def install(apps, schema_editor):
    import hashlib

    from casework import audit

    audit.install_triggers(schema_editor, "contacts_consentevent", "id")
    Notice = apps.get_model("contacts", "NoticeText")
    for purpose, (en, fa) in NOTICES.items():
        for language, text in (("en", en), ("fa", fa)):
            Notice.objects.get_or_create(
                purpose=purpose, language=language, version=1,
                defaults={"text": text, "sha256": hashlib.sha256(text.encode()).hexdigest()},
            )


def remove(apps, schema_editor):
    from casework import audit

    audit.drop_triggers(schema_editor.connection, "contacts_consentevent")


class Migration(migrations.Migration):
    dependencies = [("contacts", "0001_initial"), ("casework", "0007_task_templates")]

    operations = [migrations.RunPython(install, remove)]
