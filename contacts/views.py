"""Contacts, consent, do-not-disclose and mediated messages of a case."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters

from casework import access, audit, vault, versions
from casework.access import get_case_for_user
from casework.responses import post_only, report_errors
from casework.vault.files import STORAGE_FULL, FileNotStored

from . import consent, services
from .forms import (
    ConsentRecordForm,
    ConsentStartForm,
    ContactEditForm,
    ContactForm,
    DoNotDiscloseForm,
    MessageForm,
    ReviewForm,
    WithdrawForm,
    witnesses_for,
)
from .models import (
    NAMED_PURPOSES,
    ConsentEvent,
    Contact,
    DoNotDisclose,
    Message,
    NoticeText,
    Purpose,
)


@sensitive_post_parameters()
@login_required
def contacts(request, pk):
    case = get_case_for_user(request, pk)
    form = ContactForm(request.POST or None)
    if request.method == "POST":
        if not case.rights.work:
            raise PermissionDenied
        if form.is_valid():
            services.contact_save(
                actor=request.user,
                case=case,
                data={k: form.cleaned_data[k] for k in ContactForm.FIELDS},
            )
            messages.success(request, _("Contact added."))
            return redirect("case_contacts", pk=case.pk)
    people = list(case.contacts.order_by("created_at"))
    audit.record(request.user, "contact.listed", case=case, detail={"contacts": len(people)})
    return render(
        request,
        "contacts/contacts.html",
        {
            "case": case,
            "contacts": people,
            "form": form,
            "grants": consent.current_grants(case),
        },
    )


@sensitive_post_parameters()
@login_required
def contact_edit(request, pk, contact_pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    contact = get_object_or_404(Contact, pk=contact_pk, case=case)
    contact.case = case
    initial = _contact_initial(contact)
    form = ContactEditForm(request.POST or None, initial=initial)
    if request.method != "POST":
        form.show(contact, initial)
    elif form.is_valid():
        try:
            services.contact_save(
                actor=request.user,
                case=case,
                contact=contact,
                data={k: form.cleaned_data[k] for k in ContactForm.FIELDS},
                version=form.expected_version,
            )
        except versions.StaleEdit as stale:
            stale.current.case = case
            form, conflict = versions.stale_form(form, stale, _contact_initial(stale.current))
            audit.record(request.user, "contact.viewed", case=case, obj=contact)
            context = {"case": case, "contact": contact, "form": form, "stale": conflict}
            return render(request, "contacts/contact_form.html", context, status=409)
        messages.success(request, _("Contact saved."))
        return redirect("case_contacts", pk=case.pk)
    if request.method == "GET":
        audit.record(request.user, "contact.viewed", case=case, obj=contact)
    return render(
        request, "contacts/contact_form.html", {"case": case, "contact": contact, "form": form}
    )


def _contact_initial(contact) -> dict:
    return {k: getattr(contact, k) for k in ContactForm.FIELDS}


@login_required
def consent_page(request, pk):
    case = get_case_for_user(request, pk)
    events = list(consent.timeline(case))
    start = ConsentStartForm(contacts=case.contacts.all(), initial={"language": get_language()})
    audit.record(request.user, "consent.viewed", case=case)
    return render(
        request,
        "contacts/consent.html",
        {
            "case": case,
            "events": events,
            "grants": consent.current_grants(case, events),
            "start": start,
            "withdraw_form": WithdrawForm(witnesses=witnesses_for(case, request.user)),
        },
    )


@login_required
def consent_record(request, pk):
    """Step 2: the notice text for the chosen purpose and language, then the answer."""
    case = get_case_for_user(request, pk, access.CHANGE)
    params = request.POST if request.method == "POST" else request.GET
    start = ConsentStartForm(params, contacts=case.contacts.all())
    if not start.is_valid():
        report_errors(request, start)
        return redirect("consent", pk=case.pk)
    chosen = start.cleaned_data
    if chosen["purpose"] in NAMED_PURPOSES and chosen["counterpart"] is None:
        messages.error(request, _("Choose the contact this consent is about."))
        return redirect("consent", pk=case.pk)
    notice = NoticeText.current(chosen["purpose"], chosen["language"])
    witnesses = witnesses_for(case, request.user)
    form = ConsentRecordForm(request.POST or None, request.FILES or None, witnesses=witnesses)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.consent_record(
                actor=request.user,
                case=case,
                purpose=chosen["purpose"],
                decision=data["decision"],
                method=data["method"],
                subject=chosen["subject"],
                counterpart=chosen["counterpart"],
                notice=consent.notice_read(
                    chosen["purpose"], chosen["language"], request.POST.get("notice")
                ),
                witness=data["witness"],
                expires_on=data["expires_on"],
                scan=data["scan"],
                remarks=data["remarks"],
                once=data["once"],
            )
        except versions.AlreadyDone:
            messages.info(request, versions.ALREADY_DONE)
            return redirect("consent", pk=case.pk)
        except FileNotStored:
            form.add_error("scan", STORAGE_FULL)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, _("Consent recorded."))
            return redirect("consent", pk=case.pk)
    if request.method == "GET":  # the page names the contacts chosen: case content
        audit.record(
            request.user,
            "consent.viewed",
            case=case,
            detail={"page": "record", "purpose": chosen["purpose"]},
        )
    return render(
        request,
        "contacts/consent_record.html",
        {
            "case": case,
            "chosen": chosen,
            "notice": notice,
            "form": form,
            "start": start,
            "purpose_label": Purpose(chosen["purpose"]).label,
        },
    )


@login_required
def consent_withdraw(request, pk, event_pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    event = get_object_or_404(ConsentEvent, pk=event_pk, case=case)
    form = WithdrawForm(request.POST, witnesses=witnesses_for(case, request.user))
    if form.is_valid():
        try:
            services.consent_withdraw(
                actor=request.user,
                case=case,
                event=event,
                method=form.cleaned_data["method"],
                witness=form.cleaned_data["witness"],
                once=form.cleaned_data["once"],
            )
        except versions.AlreadyDone:
            messages.info(request, versions.ALREADY_DONE)
        except ValidationError as exc:
            report_errors(request, exc)
        else:
            messages.success(
                request, _("Consent withdrawn. It takes effect now; waiting messages were stopped.")
            )
    else:
        report_errors(request, form)
    return redirect("consent", pk=case.pk)


@login_required
def consent_scan(request, pk, event_pk):
    case = get_case_for_user(request, pk)
    event = get_object_or_404(ConsentEvent, pk=event_pk, case=case)
    if not event.scan_blob:
        raise Http404
    data = vault.open_file(case.data_key, event.scan_blob)
    audit.record(request.user, "consent.scan_viewed", case=case, obj=event)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = 'attachment; filename="consent-scan"'
    return response


@sensitive_post_parameters()
@login_required
def do_not_disclose(request, pk):
    case = get_case_for_user(request, pk)
    form = DoNotDiscloseForm(request.POST or None)
    if request.method == "POST":
        if not case.rights.work:
            raise PermissionDenied
        if form.is_valid():
            services.do_not_disclose_add(actor=request.user, case=case, data=form.cleaned_data)
            messages.success(request, _("Added to the do-not-disclose list."))
            return redirect("do_not_disclose", pk=case.pk)
    entries = list(case.do_not_disclose.order_by("created_at"))
    audit.record(request.user, "do_not_disclose.viewed", case=case)
    return render(
        request,
        "contacts/do_not_disclose.html",
        {"case": case, "entries": entries, "form": form},
    )


@login_required
def do_not_disclose_remove(request, pk, entry_pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    entry = get_object_or_404(DoNotDisclose, pk=entry_pk, case=case)
    services.do_not_disclose_remove(actor=request.user, case=case, entry=entry)
    messages.success(request, _("Removed from the list."))
    return redirect("do_not_disclose", pk=case.pk)


@sensitive_post_parameters("body")
@login_required
def thread(request, pk, contact_pk):
    case = get_case_for_user(request, pk)
    contact = get_object_or_404(Contact, pk=contact_pk, case=case)
    contact.case = case
    form = MessageForm(request.POST or None)
    if request.method == "POST":
        if not case.rights.work:
            raise PermissionDenied
        if form.is_valid():
            try:
                services.message_submit(
                    actor=request.user,
                    case=case,
                    contact=contact,
                    direction=form.cleaned_data["direction"],
                    body=form.cleaned_data["body"],
                    once=form.cleaned_data["once"],
                )
            except versions.AlreadyDone:
                messages.info(request, versions.ALREADY_DONE)
                return redirect("thread", pk=case.pk, contact_pk=contact.pk)
            except consent.ConsentRequired as exc:
                messages.error(request, str(exc))
            else:
                messages.success(
                    request, _("Message saved. A caseworker reviews it before delivery.")
                )
                return redirect("thread", pk=case.pk, contact_pk=contact.pk)
    items = list(
        Message.objects.filter(thread__case=case, thread__contact=contact).select_related(
            "created_by", "reviewed_by"
        )
    )
    for item in items:
        item.thread.case = case
    audit.record(request.user, "message.thread_viewed", case=case, obj=contact)
    return render(
        request,
        "contacts/thread.html",
        {
            "case": case,
            "contact": contact,
            "items": items,
            "form": form,
            "relay": consent.consent_state(case, "relay", contact),
        },
    )


@login_required
def review_queue(request):
    if not access.works_on_cases(request.user):
        raise PermissionDenied
    visible = access.cases_for_user(request.user, access.CHANGE)
    pending = list(
        Message.objects.filter(status=Message.Status.PENDING, thread__case__in=visible)
        .select_related("thread__case__data_key", "thread__case", "thread__contact")
        .order_by("created_at")[:200]
    )
    approved = list(
        Message.objects.filter(status=Message.Status.APPROVED, thread__case__in=visible)
        .select_related("thread__case", "thread__contact")
        .order_by("reviewed_at")[:200]
    )
    # A second person reviews: one's own messages wait for a colleague.
    mine = [m for m in pending if not m.may_review(request.user)]
    return render(
        request,
        "contacts/review_queue.html",
        {
            "pending": [m for m in pending if m.may_review(request.user)],
            "mine": mine,
            "approved": approved,
        },
    )


def _message_in(case, message_pk):
    message = get_object_or_404(
        Message.objects.select_related("thread__contact"), pk=message_pk, thread__case=case
    )
    message.thread.case = case
    message.thread.contact.case = case
    return message


@login_required
def review(request, pk, message_pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    message = _message_in(case, message_pk)
    form = ReviewForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.message_review(
                actor=request.user,
                case=case,
                message=message,
                decision=form.cleaned_data["decision"],
                reason=form.cleaned_data["reason"],
            )
        except (ValidationError, consent.ConsentRequired) as exc:
            form.add_error(None, str(exc) if isinstance(exc, consent.ConsentRequired) else exc)
        else:
            messages.success(request, _("Review saved."))
            return redirect("review_queue")
    if request.method == "GET":
        audit.record(request.user, "message.viewed", case=case, obj=message)
    return render(
        request,
        "contacts/review.html",
        {
            "case": case,
            "message": message,
            "form": form,
            "may_review": message.may_review(request.user),
            "warnings": services.review_warnings(actor=request.user, case=case, message=message),
            "relay": consent.consent_state(case, "relay", message.thread.contact),
        },
    )


@login_required
def deliver(request, pk, message_pk):
    case = get_case_for_user(request, pk, access.CHANGE)
    if (refused := post_only(request)) is not None:
        return refused
    message = _message_in(case, message_pk)
    try:
        services.message_deliver(actor=request.user, case=case, message=message)
    except (ValidationError, consent.ConsentRequired) as exc:
        report_errors(request, exc)
    else:
        messages.success(request, _("Marked as delivered."))
    return redirect("review_queue")
