"""A patch series out of mailing-list mail: an mbox, a single message or a maildir.

Python's `email` (policy.default: MIME, quoted-printable, base64, RFC 2047 headers) and `mailbox`
do the parsing; this module decides what the mail means, the way `git am` and b4 do:

* a patch is a message whose subject carries a [PATCH ...] tag (RFC, vN and k/M are read from it)
  and whose body, or one attachment, holds a diff; its author and date come from the mail
  (or from the attachment's own From:/Date: when it is a whole `git format-patch` file)
* k = 0 is the cover letter; "Re:" subjects are replies; neither is applied
* trailers (Reviewed-by, Acked-by, Tested-by, ...) in a reply are added to the patch it answers,
  or to every patch when it answers the cover letter
* with several revisions the newest complete one wins; patches are ordered by k
* an mbox's `>From ` escaping (mboxrd) is undone, as `git mailsplit --mboxrd` does

Mail is untrusted: sizes are capped, a part that does not decode is refused, and every diff is
checked for paths outside the tree and symlinks before anything is applied.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import Path

from crlab.patchsafety import check_patch_text

MAX_INPUT_BYTES = 32 << 20  # a whole mbox
MAX_MESSAGE_BYTES = 8 << 20
MAX_PATCH_BYTES = 4 << 20  # one decoded patch
MAX_MESSAGES = 5000

TRAILER_NAMES = ("Reviewed-by", "Acked-by", "Tested-by", "Reported-by", "Suggested-by", "Co-developed-by",
                 "Signed-off-by", "Fixes", "Link", "Cc")
_TRAILER = re.compile(rf"^({'|'.join(TRAILER_NAMES)}):\s*(\S.*)$", re.IGNORECASE)
# trailers a reviewer gives in a reply (a reply's Signed-off-by or Cc is not given to the patch)
_REPLY_TRAILERS = frozenset(n.lower() for n in ("Reviewed-by", "Acked-by", "Tested-by", "Reported-by",
                                                 "Suggested-by"))
_TAG = re.compile(r"\[(?P<tag>[^\]]*\bPATCH\b[^\]]*)\]", re.IGNORECASE)
_REPLY = re.compile(r"^\s*(re|aw|fwd?)\s*:", re.IGNORECASE)
_DIFF_START = re.compile(r"^(diff --git |--- (a/|/dev/null)|Index: )", re.MULTILINE)
_MBOXRD_FROM = re.compile(r"^>(>*From )", re.MULTILINE)
_PATCH_NAMES = re.compile(r"\.(patch|diff)$", re.IGNORECASE)


class MailError(Exception):
    """Mail that cannot be used: unreadable, hostile, or no series in it.  The message says why."""


@dataclass
class MailPatch:
    number: int  # k of k/M (1 for a lone [PATCH])
    total: int
    version: int
    subject: str  # without the [PATCH ...] tag
    author: str
    date: str
    message_id: str
    description: str  # the commit message: the body above the first '---' line
    diff: str
    trailers: list[str] = field(default_factory=list)  # added from replies, in the order seen
    attachment: str = ""  # the attachment's file name when the patch came as one

    def format_patch(self) -> str:
        """The patch as `git format-patch` writes it (what `git am` and crlab's patch stage read)."""
        body = self.description.rstrip("\n")
        existing = {line.strip().lower() for line in body.splitlines()}
        added = [t for t in self.trailers if t.lower() not in existing]
        if added:
            body += "\n" + "\n".join(added) if _ends_with_trailers(body) else "\n\n" + "\n".join(added)
        tag = f"PATCH v{self.version} {self.number}/{self.total}" if self.total > 1 or self.version > 1 \
            else "PATCH"
        return (f"From: {self.author}\nDate: {self.date}\nSubject: [{tag}] {self.subject}\n\n"
                f"{body}\n---\n{self.diff.rstrip(chr(10))}\n")

    def file_name(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.subject).strip("-")[:52] or "patch"
        return f"{self.number:04d}-{slug}.patch"


@dataclass
class Series:
    version: int
    total: int
    patches: list[MailPatch]
    cover_subject: str = ""
    skipped: list[str] = field(default_factory=list)  # what was read and not applied, for the report
    reproducers: list[tuple[str, str]] = field(default_factory=list)  # attached C files (name, text)

    def write(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for patch in self.patches:
            path = directory / patch.file_name()
            path.write_text(patch.format_patch())
            paths.append(path)
        (directory / "series").write_text("".join(p.name + "\n" for p in paths))
        return paths


def _ends_with_trailers(body: str) -> bool:
    last = body.rstrip("\n").split("\n\n")[-1].splitlines()
    return bool(last) and all(_TRAILER.match(line) for line in last)


# ------------------------------------------------------------------------------------ reading mail


def read_messages(path: Path) -> list[tuple[str, EmailMessage]]:
    """(where, message) for an mbox, a maildir or a single message file."""
    if path.is_dir():
        if not all((path / sub).is_dir() for sub in ("cur", "new")):
            raise MailError(f"{path} is a directory but not a maildir (no cur/ and new/)")
        box = mailbox.Maildir(path, factory=None, create=False)
        keys = sorted(box.keys())
        if len(keys) > MAX_MESSAGES:
            raise MailError(f"{path}: {len(keys)} messages, more than the {MAX_MESSAGES} crlab reads")
        out = []
        for key in keys:
            with box.get_file(key) as fh:
                raw = fh.read(MAX_MESSAGE_BYTES + 1)
            out.append((f"{path.name}/{key}", _parse_bytes(raw, key)))
        return out
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MailError(f"cannot read {path}: {exc.strerror}") from exc
    if size > MAX_INPUT_BYTES:
        raise MailError(f"{path} is {size >> 20} MiB: more than the {MAX_INPUT_BYTES >> 20} MiB crlab reads "
                        f"from a mailbox (refusing it)")
    raw = path.read_bytes()
    if raw.startswith(b"From "):
        return [(f"{path.name}#{n}", msg) for n, msg in enumerate(_split_mbox(raw, path), 1)]
    return [(path.name, _parse_bytes(raw, path.name))]


def _split_mbox(raw: bytes, path: Path) -> list[EmailMessage]:
    box = mailbox.mbox(path, factory=None, create=False)
    messages: list[EmailMessage] = []
    try:
        for number, key in enumerate(box.keys(), 1):
            if len(messages) >= MAX_MESSAGES:
                raise MailError(f"{path}: more than {MAX_MESSAGES} messages")
            data = box.get_bytes(key)
            # mboxrd: a body line '>From ' (any number of '>') was escaped by one '>'
            data = _MBOXRD_FROM.sub(lambda m: m.group(1), data.decode("latin-1")).encode("latin-1")
            messages.append(_parse_bytes(data, f"{path.name}#{number}"))
    finally:
        box.close()
    return messages


def _parse_bytes(raw: bytes, where: object) -> EmailMessage:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MailError(f"{where}: a message larger than {MAX_MESSAGE_BYTES >> 20} MiB (refusing it)")
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _text(part: Message, where: str) -> str:
    """A part's text, decoded strictly: a part that does not decode is refused, not guessed at."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    bad = [type(d).__name__ for d in part.defects if "Base64" in type(d).__name__]
    if bad:
        raise MailError(f"{where}: undecodable part ({part.get_content_type()}, {', '.join(bad)})")
    if len(payload) > MAX_PATCH_BYTES:
        raise MailError(f"{where}: a part of {len(payload) >> 20} MiB, more than the {MAX_PATCH_BYTES >> 20} MiB "
                        "a patch may have (refusing it)")
    charset = part.get_content_charset() or "us-ascii"
    try:
        text = payload.decode(charset)
    except LookupError as exc:
        raise MailError(f"{where}: undecodable part (unknown charset {charset!r})") from exc
    except UnicodeDecodeError as exc:
        if charset.lower() in ("us-ascii", "ascii"):  # undeclared 8-bit text: git am assumes UTF-8
            try:
                return payload.decode("utf-8")
            except UnicodeDecodeError:
                pass
        raise MailError(f"{where}: undecodable part (not valid {charset} at byte {exc.start})") from exc
    return text.replace("\r\n", "\n")


def _header(message: Message, name: str) -> str:
    return " ".join(str(message.get(name, "")).split())


@dataclass
class _Mail:
    where: str
    subject: str
    message_id: str
    in_reply_to: list[str]
    author: str
    date: str
    tag: str | None  # the [PATCH ...] tag's text
    reply: bool
    body: str  # the inline text
    attachments: list[tuple[str, str]]  # (file name, text) of parts that hold a diff
    c_sources: list[tuple[str, str]]  # (file name, text) of attached C files: a reproducer


def _read_mail(where: str, message: EmailMessage) -> _Mail:
    subject = _header(message, "Subject")
    tag = _TAG.search(subject)
    body_parts: list[str] = []
    attachments: list[tuple[str, str]] = []
    c_sources: list[tuple[str, str]] = []
    parts = list(message.walk()) if message.is_multipart() else [message]
    for part in parts:
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        filename = part.get_filename() or ""
        is_attachment = part.get_content_disposition() == "attachment" or bool(filename)
        textual = ctype.startswith("text/") or _PATCH_NAMES.search(filename) is not None or ctype in (
            "application/octet-stream", "application/x-patch", "application/x-diff")
        if not textual:
            continue
        text = _text(part, f"{where} ({filename or ctype})")
        if is_attachment and filename.endswith(".c"):
            c_sources.append((Path(filename).name, text))
        elif is_attachment or ctype in ("text/x-patch", "text/x-diff"):
            if _DIFF_START.search(text):
                attachments.append((filename or ctype, text))
        elif ctype == "text/plain":
            body_parts.append(text)
    refs = (_header(message, "In-Reply-To") + " " + _header(message, "References")).split()
    return _Mail(where=where, subject=subject, message_id=_header(message, "Message-ID"), in_reply_to=refs,
                 author=_header(message, "From"), date=_header(message, "Date"),
                 tag=tag.group("tag") if tag else None, reply=bool(_REPLY.match(subject)),
                 body="\n".join(body_parts), attachments=attachments,
                 c_sources=c_sources)


def _tag_numbers(tag: str) -> tuple[int, int, int]:
    """(version, k, M) of a [PATCH ...] tag: [PATCH v2 3/7] -> (2, 3, 7); [PATCH] -> (1, 1, 1)."""
    version = re.search(r"\bv(\d+)\b", tag, re.IGNORECASE)
    numbers = re.search(r"\b(\d+)/(\d+)\b", tag)
    k, total = (int(numbers.group(1)), int(numbers.group(2))) if numbers else (1, 1)
    return (int(version.group(1)) if version else 1), k, total


def _split_description(text: str) -> tuple[str, str]:
    """(commit message, diff) of a patch mail's text: the message ends at the first '---' line."""
    match = _DIFF_START.search(text)
    if not match:
        return text, ""
    head, diff = text[:match.start()], text[match.start():]
    lines = head.split("\n")
    for index, line in enumerate(lines):
        if line.rstrip() == "---":
            head = "\n".join(lines[:index])
            break
    # the signature ('-- ' and what follows) is not part of the diff
    diff = re.split(r"^-- ?$", diff, maxsplit=1, flags=re.MULTILINE)[0]
    return head.strip("\n") + "\n", diff


def _attachment_patch(text: str) -> tuple[str, str, str, str]:
    """(author, date, subject, text without headers) of a whole format-patch file; '' when absent."""
    author = date = subject = ""
    lines = text.split("\n")
    if lines and lines[0].startswith("From ") and len(lines[0].split()) > 2:
        lines = lines[1:]
    index = 0
    while index < len(lines) and re.match(r"^(From|Date|Subject): ", lines[index]):
        name, value = lines[index].split(": ", 1)
        index += 1
        while index < len(lines) and lines[index].startswith((" ", "\t")):  # folded header
            value += " " + lines[index].strip()
            index += 1
        author, date, subject = (value if name == "From" else author, value if name == "Date" else date,
                                 value if name == "Subject" else subject)
    if index and index < len(lines) and not lines[index].strip():
        index += 1
    return author, date, subject, "\n".join(lines[index:]) if index else text


def check_diff(diff: str, name: str) -> list[str]:
    """Reasons a diff from mail must not be applied (crlab.patchsafety: paths leaving the tree,
    symlinks, .git paths, absurd sizes), each once."""
    return list(dict.fromkeys(check_patch_text(diff, name)))


def find_series(messages: Iterable[tuple[str, EmailMessage]]) -> Series:
    """The newest complete series in the mail, in order, with reviewers' trailers added."""
    mails = [_read_mail(where, message) for where, message in messages]
    if not mails:
        raise MailError("no messages")
    patches: list[MailPatch] = []
    covers: dict[str, tuple[int, str]] = {}  # message id -> (version, subject)
    sources: dict[str, list[tuple[str, str]]] = {}  # message id -> attached C files
    replies: list[_Mail] = []
    skipped: list[str] = []
    for mail in mails:
        if mail.reply:
            replies.append(mail)
            continue
        if mail.tag is None:
            skipped.append(f"{mail.where}: not a patch ({mail.subject!r})")
            continue
        version, k, total = _tag_numbers(mail.tag)
        sources[mail.message_id] = mail.c_sources
        subject = _TAG.sub("", mail.subject, count=1).strip()
        if k == 0:
            covers[mail.message_id] = (version, subject)
            skipped.append(f"{mail.where}: cover letter v{version} ({subject!r})")
            continue
        author, date, description, diff, attachment = mail.author, mail.date, "", "", ""
        description, diff = _split_description(mail.body)
        if not diff and mail.attachments:
            attachment, text = mail.attachments[0]
            a_author, a_date, a_subject, rest = _attachment_patch(text)
            a_description, diff = _split_description(rest)
            author, date = a_author or author, a_date or date
            if a_subject:
                subject = _TAG.sub("", a_subject, count=1).strip()
                description = a_description
            elif not description.strip():
                description = a_description
        if not diff:
            skipped.append(f"{mail.where}: [{mail.tag}] has no diff ({subject!r})")
            continue
        problems = check_diff(diff, f"{mail.where} {attachment or subject!r}")
        if problems:
            raise MailError("refusing the series: " + "; ".join(problems))
        patches.append(MailPatch(number=k, total=total, version=version, subject=subject, author=author,
                                 date=date, message_id=mail.message_id, description=description, diff=diff,
                                 attachment=attachment))
    if not patches:
        seen = skipped + [f"{r.where}: a reply ({r.subject!r})" for r in replies]
        raise MailError("not a patch: no [PATCH] message with a diff in the mail (" + "; ".join(seen) + ")")
    by_version: dict[int, dict[int, MailPatch]] = {}
    for patch in patches:
        by_version.setdefault(patch.version, {})[patch.number] = patch  # a resend replaces the earlier copy
    version = max(by_version)
    chosen = by_version[version]
    total = max(p.total for p in chosen.values())
    missing = [k for k in range(1, total + 1) if k not in chosen]
    if missing:
        raise MailError(f"series v{version} is incomplete: patch(es) {', '.join(f'{k}/{total}' for k in missing)} "
                        "not in the mail")
    ordered = [chosen[k] for k in range(1, total + 1)]
    skipped += [f"v{p.version} {p.number}/{p.total} ({p.subject!r}): older revision"
                for p in patches if p.version != version]
    by_id = {p.message_id: p for p in ordered}
    cover_ids = {mid for mid, (v, _) in covers.items() if v == version}
    for reply in replies:
        trailers = [f"{m.group(1).title().replace('-By', '-by')}: {m.group(2).strip()}"
                    for line in reply.body.splitlines() if (m := _TRAILER.match(line.strip())) and
                    not line.startswith(">") and m.group(1).lower() in _REPLY_TRAILERS]
        if not trailers:
            skipped.append(f"{reply.where}: reply ({reply.subject!r})")
            continue
        parent = reply.in_reply_to[0] if reply.in_reply_to else ""
        targets = ordered if parent in cover_ids else [by_id[parent]] if parent in by_id else []
        for patch in targets:
            patch.trailers.extend(t for t in trailers if t not in patch.trailers)
        what = "the series" if parent in cover_ids else (f"patch {by_id[parent].number}" if parent in by_id
                                                        else "another revision (not applied)")
        skipped.append(f"{reply.where}: reply with {', '.join(trailers)} -> {what}")
    cover = next((s for mid, (v, s) in covers.items() if v == version), "")
    reproducers = [c for mid in [*sorted(cover_ids), *(p.message_id for p in ordered)] for c in sources.get(mid, [])]
    return Series(version=version, total=total, patches=ordered, cover_subject=cover, skipped=skipped,
                  reproducers=reproducers)


def load_series(path: Path) -> Series:
    return find_series(read_messages(path))
