//! calls.null-out, names.format, file.size and file.codes: what the calls between Prepare and
//! End answer, each compared with the code or the content their pages document, in fixed
//! programs (the sequence model meets some of these only by chance).

use super::check::{Check, Ctx, Eval, Judged, Ran};
use super::common::{end, live, program, session_program, slot, Findings};
use ntdsbcli_harness::codes::{
    describe, ERROR_HANDLE_EOF, ERROR_INVALID_PARAMETER, E_INVALIDARG, HR_INVALID_HANDLE,
};
use ntdsbcli_harness::program::{Close, ListKind, Names, Observation, Read, ReadToEnd};
use ntdsbcli_harness::program::{Op, OpenFile, Program, Step, Text};

fn entry(buf: u8, index: u16) -> Text {
    Text::Entry { buf, index }
}

/// A list call in the given form, when exported.
fn list_call(ctx: &Ctx, kind: ListKind, wide: bool, buf: u8) -> Option<Names> {
    let op = Names {
        kind,
        wide,
        h: slot(0),
        out: true,
        size: true,
        buf,
    };
    ctx.has(ntdsbcli_harness::calls::Call::export(&op))
        .then_some(op)
}

// ---- calls.null-out (REQ-40, REQ-52; Read's pcbRead: its page's "one or more parameters") ----

/// One NULL out-pointer case: its label, whether the page names the parameter (else a
/// different answer is only a warning), and the ops before the bad call and the bad call.
struct NullCase {
    label: String,
    /// The requirement whose page names the parameter.
    req: &'static str,
    named: bool,
    setup: Vec<(&'static str, Op)>,
    bad: Op,
}

fn null_cases(ctx: &Ctx) -> Vec<NullCase> {
    let mut out = Vec::new();
    for kind in [ListKind::DatabaseNames, ListKind::BackupLogs] {
        let Some(ok) = ctx.names(kind, slot(0), 1) else {
            continue;
        };
        let Op::Names(ok) = ok else { continue };
        let export = ntdsbcli_harness::calls::Call::export(&ok);
        for (what, out_ptr, size) in [("the list pointer", false, true), ("pcbSize", true, false)] {
            out.push(NullCase {
                label: format!("{export} with NULL {what}"),
                req: "REQ-52",
                named: true,
                setup: Vec::new(),
                bad: Op::Names(Names {
                    out: out_ptr,
                    size,
                    ..ok.clone()
                }),
            });
        }
    }
    let names = ctx.names(ListKind::DatabaseNames, slot(0), 1);
    if let (Some(open), Some(names)) = (ctx.open_file(slot(0), entry(1, 0)), names) {
        let Op::OpenFile(open) = open else {
            unreachable!("open_file builds an OpenFile")
        };
        let export = ntdsbcli_harness::calls::Call::export(&open);
        out.push(NullCase {
            label: format!("{export} with a NULL attachment name"),
            req: "REQ-40",
            named: true,
            setup: Vec::new(),
            bad: Op::OpenFile(OpenFile {
                name: Text::Null,
                ..open.clone()
            }),
        });
        out.push(NullCase {
            label: format!("{export} with NULL pliFileSize"),
            req: "REQ-40",
            named: true,
            setup: vec![("names", names.clone())],
            bad: Op::OpenFile(OpenFile {
                size: false,
                ..open.clone()
            }),
        });
        if ctx.has("DsBackupRead") {
            out.push(NullCase {
                label: "DsBackupRead with NULL pcbRead".into(),
                req: "REQ-44",
                named: false,
                setup: vec![("names", names), ("open", Op::OpenFile(open))],
                bad: Op::Read(Read {
                    h: slot(0),
                    cb: 24_576,
                    pcb: false,
                }),
            });
        }
    }
    out
}

pub struct CallsNullOut;

pub struct NullOutSteps {
    prepare: Step,
    /// The calls before the bad one, each with what a note calls it.
    setup: Vec<(&'static str, Step)>,
    bad: Step,
    req: &'static str,
    named: bool,
}

impl Check for CallsNullOut {
    type Steps = NullOutSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, NullOutSteps)> {
        null_cases(ctx)
            .into_iter()
            .map(|c| {
                let mut p = program(c.label);
                let prepare = p.push(ctx.prepare(0, 0));
                let setup = c
                    .setup
                    .into_iter()
                    .map(|(what, op)| (what, p.push(op)))
                    .collect();
                let bad = p.push(c.bad);
                p.push(end(slot(0)));
                p.push(Op::Cleanup);
                let steps = NullOutSteps {
                    prepare,
                    setup,
                    bad,
                    req: c.req,
                    named: c.named,
                };
                (p, steps)
            })
            .collect()
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<NullOutSteps>]) -> Judged {
        if ran.is_empty() {
            return Err(Eval::skip(
                "the library exports no name list, DsBackupOpenFile or DsBackupRead",
            ));
        }
        let mut f = Findings::default();
        let mut tried = 0;
        for r in ran {
            let s = r.steps;
            live(r.get(s.prepare))?;
            let label = &r.program.label;
            // A case that needs an open attachment is tried only once the attachment opened.
            let setup_failed = s.setup.iter().find(|(_, t)| r.get(*t).rc != Some(0));
            if let Some(&(what, t)) = setup_failed {
                f.note(format!(
                    "{label}: not tried, its set-up call ({what}) returned {}",
                    rc_text(r.get(t))
                ));
                continue;
            }
            tried += 1;
            let bad = r.get(s.bad);
            if s.named {
                f.invalid_param(ctx, &format!("{label} ({})", s.req), bad);
            } else {
                let accepted = matches!(bad.rc, Some(ERROR_INVALID_PARAMETER) | None)
                    || (ctx.accept_hresult && bad.rc == Some(E_INVALIDARG));
                if !accepted {
                    f.compat(format!(
                    "{label} returned {}; its page gives ERROR_INVALID_PARAMETER for invalid parameters without naming pcbRead, so another answer is a compatibility warning",
                    rc_text(bad)
                ));
                }
            }
        }
        if tried == 0 {
            return Ok(f.inconclusive("no NULL out-pointer case could be set up"));
        }
        Ok(f.finish(format!(
            "ERROR_INVALID_PARAMETER for each of {tried} NULL out-pointers"
        )))
    }
}

fn rc_text(o: &Observation) -> String {
    match (o.rc, &o.not_run) {
        (Some(rc), _) => describe(rc),
        (None, Some(why)) => format!("nothing ({why})"),
        (None, None) => "nothing".into(),
    }
}

// ---- names.format (REQ-51, REQ-53) ----

/// The BFT constants of ntdsbcli.h: the character before each name.
pub const BFT: [u16; 9] = [0x80, 0x40, 0x20, 0x21, 0x82, 0x83, 0x44, 0x25, 0x0F];

/// What is wrong with a name list as a library returned it: its first `*pcbSize` bytes (or as
/// many as were copied, when `complete` is false) must hold entries of a BFT character, a name
/// and a NUL, and then the NUL that ends the list. None when the list is right.
pub fn list_problem(bytes: &[u8], wide: bool, complete: bool) -> Option<String> {
    let unit = if wide { 2 } else { 1 };
    let units = ntdsbcli_harness::store::list_units(bytes, wide);
    let within = |n: usize| format!("within the {} bytes *pcbSize gives", n * unit);
    let mut i = 0;
    let mut entry = 0;
    loop {
        let Some(&first) = units.get(i) else {
            return complete.then(|| {
                if entry == 0 {
                    format!("the list holds no NUL {} (REQ-51)", within(units.len()))
                } else {
                    format!(
                        "the list does not end with a second NUL {} ({entry} entries found){} (REQ-51)",
                        within(units.len()),
                        if wide {
                            "; a size counted in WCHARs instead of bytes (REQ-53) ends it early"
                        } else {
                            ""
                        }
                    )
                }
            });
        };
        if first == 0 {
            return None;
        }
        if !BFT.contains(&first) {
            return Some(format!(
                "entry {entry} starts with 0x{first:02X}, which is no BFT character (REQ-51: each name starts with one {} of a BFT constant)",
                if wide { "WCHAR" } else { "CHAR" }
            ));
        }
        match units[i + 1..].iter().position(|&u| u == 0) {
            Some(n) => i += n + 2,
            None => {
                return complete
                    .then(|| format!("entry {entry} has no NUL {} (REQ-51)", within(units.len())))
            }
        }
        entry += 1;
    }
}

const LIST_FORMS: [(ListKind, bool, u8); 4] = [
    (ListKind::DatabaseNames, true, 1),
    (ListKind::DatabaseNames, false, 2),
    (ListKind::BackupLogs, true, 3),
    (ListKind::BackupLogs, false, 4),
];

pub struct NamesFormat;

pub struct NamesFormatSteps {
    prepare: Step,
    /// Each exported list call, with its step.
    lists: Vec<(Names, Step)>,
}

impl Check for NamesFormat {
    type Steps = NamesFormatSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, NamesFormatSteps)> {
        let mut p = program("every exported form of both name lists");
        let prepare = p.push(ctx.prepare(0, 0));
        let lists: Vec<(Names, Step)> = LIST_FORMS
            .into_iter()
            .filter_map(|(kind, wide, buf)| list_call(ctx, kind, wide, buf))
            .map(|op| (op.clone(), p.push(Op::Names(op))))
            .collect();
        if lists.is_empty() {
            return Vec::new();
        }
        p.push(end(slot(0)));
        p.push(Op::Cleanup);
        vec![(p, NamesFormatSteps { prepare, lists })]
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<NamesFormatSteps>]) -> Judged {
        let r = session_program(
            ran,
            |s| s.prepare,
            "the library exports no DsBackupGetDatabaseNames or DsBackupGetBackupLogs",
        )?;
        let mut f = Findings::default();
        let mut judged = Vec::new();
        for (op, step) in &r.steps.lists {
            let export = ntdsbcli_harness::calls::Call::export(op);
            let o = r.get(*step);
            match (o.rc, o.ptr) {
                (Some(0), Some(true)) => {}
                (Some(0), _) => {
                    f.note(format!(
                        "{export} returned S_OK with a NULL list; not judged"
                    ));
                    continue;
                }
                _ => {
                    f.note(format!("{export} returned {}; not judged", rc_text(o)));
                    continue;
                }
            }
            let bytes = o.bytes.as_deref().unwrap_or_default();
            let cb = o.size.unwrap_or(0);
            let complete = bytes.len() as u64 == cb;
            if !complete {
                f.note(format!(
                    "{export}: only the first {} of {cb} bytes were read",
                    bytes.len()
                ));
            }
            match list_problem(bytes, op.wide, complete) {
                Some(p) => f.fail(format!("{export}: {p}")),
                None => judged.push(export),
            }
        }
        if judged.is_empty() && !f.failed() {
            return Ok(f.inconclusive("no list came back to judge"));
        }
        Ok(f.finish(format!(
            "each list ends with a second NUL within *pcbSize bytes and starts each name with a BFT character: {}",
            judged.join(", ")
        )))
    }
}

// ---- file.size (REQ-45, REQ-44) ----

/// The attachments file.size reads: up to three of each list.
const FILES: [(u8, u16); 6] = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)];
/// The read size: the smallest the page allows, so that a count beyond it shows.
const READ_CB: u32 = 24_576;

pub struct FileSize;

pub struct FileSizeSteps {
    prepare: Step,
    /// Each attachment tried: its list's buffer, its index, its OpenFile and its reading to EOF.
    files: Vec<(u8, u16, Step, Step)>,
}

impl Check for FileSize {
    type Steps = FileSizeSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, FileSizeSteps)> {
        let lists = [
            ctx.names(ListKind::DatabaseNames, slot(0), 1),
            ctx.names(ListKind::BackupLogs, slot(0), 2),
        ];
        let open = ctx.open_file(slot(0), entry(1, 0));
        if lists[0].is_none()
            || open.is_none()
            || !ctx.has("DsBackupRead")
            || !ctx.has("DsBackupClose")
        {
            return Vec::new();
        }
        let mut p = program("each listed attachment opened and read to EOF");
        let prepare = p.push(ctx.prepare(0, 0));
        p.push_opt(lists[0].clone());
        p.push_opt(lists[1].clone());
        let mut files = Vec::new();
        for (buf, index) in FILES {
            if buf == 2 && lists[1].is_none() {
                continue;
            }
            let open = p.push_opt(ctx.open_file(slot(0), entry(buf, index)));
            let read = p.push(Op::ReadToEnd(ReadToEnd {
                h: slot(0),
                cb: READ_CB,
            }));
            p.push(Op::Close(Close { h: slot(0) }));
            files.push((buf, index, open, read));
        }
        p.push(end(slot(0)));
        p.push(Op::Cleanup);
        vec![(p, FileSizeSteps { prepare, files })]
    }

    fn judge(&self, _ctx: &Ctx, ran: &[Ran<FileSizeSteps>]) -> Judged {
        let r = session_program(
            ran,
            |s| s.prepare,
            "needs DsBackupGetDatabaseNames, DsBackupOpenFile, DsBackupRead and DsBackupClose",
        )?;
        let mut f = Findings::default();
        let mut read = 0;
        for &(buf, index, open, rd) in &r.steps.files {
            if !open.present() {
                continue;
            }
            let (open, rd) = (r.get(open), r.get(rd));
            // An entry the list does not have is not run; an attachment that would not open
            // is end.open-file's and the model's to judge.
            if open.rc != Some(0) {
                if open.not_run.is_none() {
                    f.note(format!(
                        "entry {index} of the {} list did not open: {}",
                        list_name(buf),
                        rc_text(open)
                    ));
                }
                continue;
            }
            let what = format!("entry {index} of the {} list", list_name(buf));
            let (Some(size), Some(total)) = (open.size, rd.size) else {
                continue;
            };
            read += 1;
            if let Some(l) = rd.largest.filter(|&l| l > READ_CB as u64) {
                f.fail(format!(
                    "{what}: a DsBackupRead into {READ_CB} bytes wrote {l} to *pcbRead, expected at most {READ_CB}, the buffer's size (REQ-44)"
                ));
            }
            if rd.rc != Some(ERROR_HANDLE_EOF) {
                f.note(format!(
                    "{what}: reading stopped with {}, not ERROR_HANDLE_EOF (see file.codes)",
                    rc_text(rd)
                ));
                continue;
            }
            if size as i64 != total as i64 {
                f.fail(format!(
                    "{what}: OpenFile wrote {} to *pliFileSize, but reading to EOF gave {total} bytes; expected the file's size in bytes (REQ-45)",
                    size as i64
                ));
            }
        }
        if read == 0 {
            return Ok(f.inconclusive("no listed attachment opened (see end.open-file)"));
        }
        Ok(f.finish(format!(
            "*pliFileSize equals the bytes read to EOF, and no *pcbRead exceeds the buffer, for each of {read} attachments"
        )))
    }
}

fn list_name(buf: u8) -> &'static str {
    if buf == 1 {
        "database"
    } else {
        "log"
    }
}

// ---- file.codes (REQ-41, REQ-43, REQ-44) ----

pub struct FileCodes;

pub struct FileCodesSteps {
    prepare: Step,
    names: Step,
    open: Step,
    /// Close before any OpenFile, when Close is exported.
    close_none: Option<Step>,
    /// Reads into 8192 and 16384 bytes, to the end, and once more: when Read is exported.
    reads: Option<[Step; 4]>,
    /// Close of the open file and a second Close: when Close is exported.
    closes: Option<(Step, Step)>,
    end: Step,
}

impl Check for FileCodes {
    type Steps = FileCodesSteps;

    fn plan(&self, ctx: &Ctx) -> Vec<(Program, FileCodesSteps)> {
        let names = ctx.names(ListKind::DatabaseNames, slot(0), 1);
        let open = ctx.open_file(slot(0), entry(1, 0));
        let (Some(names), Some(Op::OpenFile(open))) = (names, open) else {
            return Vec::new();
        };
        let (read, close) = (ctx.has("DsBackupRead"), ctx.has("DsBackupClose"));
        if !read && !close {
            return Vec::new();
        }
        let read_op = |cb| {
            Op::Read(Read {
                h: slot(0),
                cb,
                pcb: true,
            })
        };
        let close_op = || Op::Close(Close { h: slot(0) });
        let mut p = program("one attachment through its documented codes");
        let prepare = p.push(ctx.prepare(0, 0));
        let names = p.push(names);
        let close_none = close.then(|| p.push(close_op()));
        // A valid hint other than the one every other check sends.
        let open = p.push(Op::OpenFile(OpenFile {
            hint: 65_536,
            ..open.clone()
        }));
        let reads = read.then(|| {
            [
                p.push(read_op(8_192)),
                p.push(read_op(16_384)),
                p.push(Op::ReadToEnd(ReadToEnd {
                    h: slot(0),
                    cb: 65_536,
                })),
                p.push(read_op(24_576)),
            ]
        });
        let closes = close.then(|| (p.push(close_op()), p.push(close_op())));
        let end = p.push(end(slot(0)));
        p.push(Op::Cleanup);
        let steps = FileCodesSteps {
            prepare,
            names,
            open,
            close_none,
            reads,
            closes,
            end,
        };
        vec![(p, steps)]
    }

    fn judge(&self, ctx: &Ctx, ran: &[Ran<FileCodesSteps>]) -> Judged {
        let r = session_program(
            ran,
            |s| s.prepare,
            "needs DsBackupGetDatabaseNames, DsBackupOpenFile and DsBackupRead or DsBackupClose",
        )?;
        let s = r.steps;
        let mut f = Findings::default();
        if let Some(none) = s.close_none {
            f.code(
                "Close before any OpenFile (no file open, REQ-43)",
                r.get(none),
                HR_INVALID_HANDLE,
            );
        }
        let open = r.get(s.open);
        if open.rc != Some(0) {
            let names = r.get(s.names);
            if names.rc == Some(0) {
                f.fail(format!(
                    "OpenFile of the first listed attachment with a read hint of 65536 (a multiple of 8192, at least 24576, as the page asks, REQ-41) returned {}, expected 0 (S_OK)",
                    rc_text(open)
                ));
                return Ok(f.finish(""));
            }
            return Ok(f.inconclusive(format!(
                "the attachment list was not given ({}), so no file was opened",
                rc_text(names)
            )));
        }
        if let Some([small, smaller, eof, after_eof]) = s.reads {
            f.invalid_param(
                ctx,
                "Read into 8192 bytes (less than 24576, REQ-41)",
                r.get(small),
            );
            f.invalid_param(
                ctx,
                "Read into 16384 bytes (less than 24576, REQ-41)",
                r.get(smaller),
            );
            f.code(
                "reading the attachment to its end (REQ-44)",
                r.get(eof),
                ERROR_HANDLE_EOF,
            );
            f.code(
                "Read once more after ERROR_HANDLE_EOF (REQ-44)",
                r.get(after_eof),
                ERROR_HANDLE_EOF,
            );
        }
        if let Some((open_close, again)) = s.closes {
            f.code("Close of the open file (REQ-43)", r.get(open_close), 0);
            f.code(
                "a second Close (no file open, REQ-43)",
                r.get(again),
                HR_INVALID_HANDLE,
            );
        }
        f.note_end_not_ok("End", r.get(s.end));
        Ok(f.finish("Read refuses 8192 and 16384 with ERROR_INVALID_PARAMETER and answers ERROR_HANDLE_EOF at and after the end; Close gives hrInvalidHandle with no file open; a hint of 65536 opens the file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wide(units: &[u16]) -> Vec<u8> {
        units.iter().flat_map(|u| u.to_ne_bytes()).collect()
    }

    #[test]
    fn a_right_list_passes_in_both_forms() {
        let a = b"\x44C:\\ntds.dit\0\x21C:\\edb.log\0\0";
        assert_eq!(list_problem(a, false, true), None);
        let w: Vec<u16> = a.iter().map(|&b| b as u16).collect();
        assert_eq!(list_problem(&wide(&w), true, true), None);
        // A buffer larger than the list is still the buffer's size in bytes.
        let mut padded = a.to_vec();
        padded.extend([0, 0, 0]);
        assert_eq!(list_problem(&padded, false, true), None);
    }

    #[test]
    fn a_size_in_wchars_cuts_the_list_short() {
        let w: Vec<u16> = b"\x44C:\\ntds.dit\0\0".iter().map(|&b| b as u16).collect();
        let bytes = wide(&w);
        let p = list_problem(&bytes[..bytes.len() / 2], true, true).unwrap();
        assert!(p.contains("no NUL"), "{p}");
        // Read only in part: nothing can be said.
        assert_eq!(list_problem(&bytes[..bytes.len() / 2], true, false), None);
    }

    #[test]
    fn a_name_without_its_bft_character_is_named() {
        let p = list_problem(b"C:\\ntds.dit\0\0", false, true).unwrap();
        assert!(p.contains("0x43") && p.contains("BFT"), "{p}");
        // A CHAR-sized BFT before a wide name reads as one WCHAR that is no BFT constant.
        let mut w = vec![u16::from_ne_bytes([0x44, b'C'])];
        w.extend([b':' as u16, 0, 0]);
        assert!(list_problem(&wide(&w), true, true).is_some());
    }

    #[test]
    fn a_list_without_its_final_nul_is_named() {
        let p = list_problem(b"\x44C:\\ntds.dit\0", false, true).unwrap();
        assert!(p.contains("second NUL"), "{p}");
        assert!(list_problem(b"", false, true).is_some());
    }
}
