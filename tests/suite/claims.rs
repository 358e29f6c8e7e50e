//! Every number quoted in README.md's `## Results` and in docs/results/README.md that a CSV under
//! docs/results backs is checked against that CSV (issue 25, item 4).
//!
//! The claims live in `docs/results/claims.csv`, one row per quoted number or group of numbers,
//! RFC 4180 CSV (fields with commas or quotes are quoted, `""` inside them is one `"`); lines
//! starting with `#` between records are comments. Columns:
//!
//! - `doc`: the document, optionally narrowed to a section: `README.md#Results` is the part of
//!   README.md from the heading whose text starts with `Results` to the next heading of the same
//!   or a higher level.
//! - `context`: text that occurs in that section (whitespace, line breaks included, is compared
//!   collapsed to single spaces); empty means the quote itself.
//! - `quote`: the numbers as written, inside `context`: `85.8%`, `84.6–87.0`, `600, 1275, 675`,
//!   `55 500 / 28 812`. Every number in it is checked, in order; `,` or a space before exactly
//!   three digits is a thousands separator.
//! - `csv`: the CSV under docs/results; several joined by `|` are read as one table, with a
//!   column `_file` naming each row's file. (The sentiment CSVs write the model name
//!   `same architecture, from scratch` unquoted; a row's extra fields are joined back into its
//!   `model` field.)
//! - `filter`: conditions joined by `;`, all of which a row must pass: `col=v` (`col=a|b` for
//!   either), `col!=v`, and the numeric `col<v`, `col<=v`, `col>v`, `col>=v`; `=` compares as
//!   numbers when both sides are numbers (`lr=1e-4` matches `0.0001`). One condition may be
//!   several joined by ` or ` (`model!=mamba or seed!=0` leaves out one run).
//! - `column`: the value read, or `a/b`, `a*b` or `a-b` of two columns of the same row or of a
//!   column and a number (`len-1`).
//! - `agg`: `value` (exactly one row), `list` (every row, file order), `mean`, `min`, `max`,
//!   `range` (min and max, for `a–b`), `count`, `sum`, `spread` (max − min), `lead` (largest minus
//!   second largest). `OUTER/INNER:key1+key2` groups the rows by the key columns, reduces each
//!   group with INNER (one number) and the groups, in order of first appearance, with OUTER:
//!   `range/mean:seed` is the min–max over seeds of each seed's mean.
//! - `scale`: factor applied before the comparison (100 for percentages; empty = 1).
//! - `decimals`: the precision the quote rounds to; empty means as written, number by number
//!   (`99.6–100` holds for 0.9961 and 0.99995), and `-2` means to hundreds (`5900` for 5875).
//!
//! A quoted number is right when it is the CSV's value rounded to that precision. A number
//! written after `≥`, `≤`, `<` or `>` is a bound instead, compared without rounding (`≥ 90%`
//! fails for 89.9). A one-number quote of a `range` holds when both ends round to it.
//!
//! Not checked:
//! - numbers no CSV holds: wall times and CPU minutes of whole runs (logs, `/usr/bin/time`), the
//!   .md benchmark tables (train_speed.md, model_speed.md, scan.md: ms per step, speed ratios,
//!   memory), the tiny GPT's unigram / bigram baselines (27.1 / 12.1, and "nats below the
//!   bigram"), the sentiment data set's 10,568 sentences, embedding cosines, Δ and decay read
//!   off plots, the homework's and the independent implementations' numbers, and the old-code
//!   side of "before → after" comparisons (`89 → 93%`: only 93 is checked);
//! - numbers the table cannot derive: a logarithm (loss 1.61 nats), ratios across rows (8% fewer
//!   parameters, 67 epochs, ≈ 110 000 examples), Problem 3's per-M convergence spread
//!   (1350–5250), a range mixing two measures (the one-seed NoPE's "10–16%"), and Problem 2's ms
//!   per step "when nothing else ran" (the CSV's times include the shared minutes);
//! - the experiments' settings (steps, budgets, sizes, learning rates, seeds, lengths) and
//!   counts written as words ("on two seeds of three").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One row of `claims.csv`, with the line it starts on.
#[derive(Debug, Clone)]
struct Claim {
    line: usize,
    doc: String,
    context: String,
    quote: String,
    csv: String,
    filter: String,
    column: String,
    agg: String,
    scale: String,
    decimals: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// RFC 4180 records, each with the (1-based) line it starts on; `#` lines between records are
/// skipped when `comments` is set.
fn parse_csv(text: &str, comments: bool) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        if comments && chars.peek() == Some(&'#') {
            for c in chars.by_ref() {
                if c == '\n' {
                    line += 1;
                    break;
                }
            }
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    if quoted {
                        return Err(format!("line {start}: unterminated quoted field"));
                    }
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if quoted => {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                }
                Some('"') if field.is_empty() => quoted = true,
                Some(',') if !quoted => fields.push(std::mem::take(&mut field)),
                Some('\r') if !quoted => {}
                Some('\n') if !quoted => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some(c) => {
                    if c == '\n' {
                        line += 1;
                    }
                    field.push(c);
                }
            }
        }
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        records.push((start, fields));
    }
    Ok(records)
}

const COLUMNS: [&str; 9] = [
    "doc", "context", "quote", "csv", "filter", "column", "agg", "scale", "decimals",
];

fn parse_claims(text: &str) -> Result<Vec<Claim>, String> {
    let mut records = parse_csv(text, true)?.into_iter();
    let (_, header) = records.next().ok_or("claims table is empty")?;
    if header != COLUMNS {
        return Err(format!("claims header is {header:?}, expected {COLUMNS:?}"));
    }
    records
        .map(|(line, f)| {
            if f.len() != COLUMNS.len() {
                return Err(format!("claims.csv:{line}: {} fields, expected 9", f.len()));
            }
            let mut f = f.into_iter();
            let mut next = || f.next().unwrap();
            Ok(Claim {
                line,
                doc: next(),
                context: next(),
                quote: next(),
                csv: next(),
                filter: next(),
                column: next(),
                agg: next(),
                scale: next(),
                decimals: next(),
            })
        })
        .collect()
}

/// Collapses every run of whitespace to one space.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of `path`, cut to the section whose heading starts with what follows `#`.
fn section(root: &Path, doc: &str) -> Result<String, String> {
    let (path, heading) = match doc.split_once('#') {
        Some((p, h)) => (p, Some(h)),
        None => (doc, None),
    };
    let text = std::fs::read_to_string(root.join(path)).map_err(|e| format!("{path}: {e}"))?;
    let Some(heading) = heading else {
        return Ok(text);
    };
    let level = |l: &str| {
        let n = l.chars().take_while(|&c| c == '#').count();
        (n > 0 && l[n..].starts_with(' ')).then_some(n)
    };
    let mut out = None::<(usize, String)>;
    let mut fenced = false;
    for l in text.lines() {
        // A `#` line inside a code block is not a heading.
        fenced ^= l.trim_start().starts_with("```");
        match (&mut out, level(l).filter(|_| !fenced)) {
            (None, Some(n)) if l[n..].trim_start().starts_with(heading) => {
                out = Some((n, String::new()))
            }
            (Some((n, _)), Some(m)) if m <= *n => break,
            (Some((_, s)), _) => {
                s.push_str(l);
                s.push('\n');
            }
            _ => {}
        }
    }
    out.map(|(_, s)| s)
        .ok_or_else(|| format!("{path} has no heading starting with {heading:?}"))
}

/// A number as the quote writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quoted {
    value: f64,
    /// Digits after the point.
    decimals: i32,
    /// `≥`, `≤`, `<` or `>` written before it, if any.
    relation: Option<char>,
}

/// The numbers written in `quote`.
fn numbers(quote: &str) -> Vec<Quoted> {
    let c: Vec<char> = quote.chars().collect();
    let digit = |i: usize| c.get(i).is_some_and(|d| d.is_ascii_digit());
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if !digit(i) {
            i += 1;
            continue;
        }
        let negative = i > 0 && c[i - 1] == '−';
        let relation = c[..i - usize::from(negative)]
            .iter()
            .rev()
            .find(|c| !c.is_whitespace())
            .copied()
            .filter(|c| matches!(c, '≥' | '≤' | '<' | '>'));
        let mut text = String::new();
        let mut run = 0;
        while i < c.len() {
            if digit(i) {
                text.push(c[i]);
                run += 1;
                i += 1;
            } else if matches!(c[i], ',' | ' ' | '\u{a0}' | '\u{202f}' | '\u{2009}')
                && run <= 3
                && (1..=3).all(|k| digit(i + k))
                && !digit(i + 4)
                && !text.contains('.')
            {
                i += 1;
                run = 0;
            } else {
                break;
            }
        }
        let mut decimals = 0;
        if i + 1 < c.len() && c[i] == '.' && digit(i + 1) {
            text.push('.');
            i += 1;
            while digit(i) {
                text.push(c[i]);
                decimals += 1;
                i += 1;
            }
        }
        let v: f64 = text.parse().unwrap();
        out.push(Quoted {
            value: if negative { -v } else { v },
            decimals,
            relation,
        });
    }
    out
}

/// A table: header and rows, several files with one header read as one.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn load(root: &Path, paths: &str) -> Result<Table, String> {
        let mut table: Option<Table> = None;
        for p in paths.split('|') {
            let path = root.join("docs/results").join(p);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{p}: {e}"))?;
            let mut records = parse_csv(&text, false)?.into_iter().map(|(_, r)| r);
            let header = records.next().ok_or(format!("{p} is empty"))?;
            // The sentiment CSVs write `same architecture, from scratch` unquoted: a row with
            // extra fields gets them joined back into its `model` field.
            let model = header.iter().position(|h| h == "model");
            let rows: Vec<_> = records
                .map(|mut r| {
                    if let Some(m) = model.filter(|_| r.len() > header.len()) {
                        let extra = r.len() - header.len();
                        let joined = r.drain(m..=m + extra).collect::<Vec<_>>().join(",");
                        r.insert(m, joined);
                    }
                    r
                })
                .collect();
            if let Some((line, r)) = rows
                .iter()
                .enumerate()
                .find(|(_, r)| r.len() != header.len())
            {
                return Err(format!("{p}: row {} has {} fields", line + 2, r.len()));
            }
            // Which file a row came from, so grouped aggregations can keep runs apart.
            let mut header = header;
            header.push("_file".into());
            let rows = rows.into_iter().map(|mut r| {
                r.push(p.to_string());
                r
            });
            match &mut table {
                None => {
                    table = Some(Table {
                        header,
                        rows: rows.collect(),
                    })
                }
                Some(t) if t.header == header => t.rows.extend(rows),
                Some(_) => return Err(format!("{p}: header differs from the first file's")),
            }
        }
        table.ok_or_else(|| "no CSV named".to_string())
    }

    fn col(&self, name: &str) -> Result<usize, String> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no column {name:?} (columns: {})", self.header.join(",")))
    }
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse().ok()
}

/// A test on one row.
type Condition = Box<dyn Fn(&[String]) -> bool>;

/// One `col OP value` test.
fn condition(t: &Table, cond: &str) -> Result<Condition, String> {
    let at = cond
        .find(['=', '<', '>', '!'])
        .ok_or_else(|| format!("condition {cond:?} has no operator"))?;
    let col = t.col(cond[..at].trim())?;
    let rest = &cond[at..];
    let op = ["!=", "<=", ">=", "=", "<", ">"]
        .into_iter()
        .find(|op| rest.starts_with(op))
        .ok_or_else(|| format!("condition {cond:?}: unknown operator"))?;
    let value = rest[op.len()..].trim().to_string();
    if let "=" | "!=" = op {
        let negate = op == "!=";
        return Ok(Box::new(move |r: &[String]| {
            let cell = r[col].as_str();
            let equal = value.split('|').any(|v| {
                cell == v || matches!((number(cell), number(v)), (Some(a), Some(b)) if a == b)
            });
            equal != negate
        }));
    }
    let bound = number(&value).ok_or_else(|| format!("condition {cond:?}: not a number"))?;
    let op = op.to_string();
    Ok(Box::new(move |r: &[String]| {
        number(&r[col]).is_some_and(|x| match op.as_str() {
            "<" => x < bound,
            "<=" => x <= bound,
            ">" => x > bound,
            _ => x >= bound,
        })
    }))
}

/// The `;`-joined conditions of `filter`, each of them one test or several joined by ` or `.
fn conditions(t: &Table, filter: &str) -> Result<Vec<Condition>, String> {
    let mut out: Vec<Condition> = Vec::new();
    for cond in filter.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let any = cond
            .split(" or ")
            .map(|c| condition(t, c.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Box::new(move |r: &[String]| any.iter().any(|f| f(r))));
    }
    Ok(out)
}

/// Reduces `values` with one aggregation to one or more numbers.
fn reduce(agg: &str, values: &[f64]) -> Result<Vec<f64>, String> {
    if values.is_empty() {
        return Err("no row matches the filter".into());
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(match agg {
        "value" if values.len() == 1 => vec![values[0]],
        "value" => return Err(format!("`value` needs one row, {} match", values.len())),
        "list" => values.to_vec(),
        "mean" => vec![values.iter().sum::<f64>() / values.len() as f64],
        "sum" => vec![values.iter().sum()],
        "count" => vec![values.len() as f64],
        "min" => vec![min],
        "max" => vec![max],
        "range" => vec![min, max],
        "spread" => vec![max - min],
        "lead" if values.len() >= 2 => {
            let mut v = values.to_vec();
            v.sort_by(f64::total_cmp);
            vec![v[v.len() - 1] - v[v.len() - 2]]
        }
        _ => return Err(format!("unknown or inapplicable aggregation {agg:?}")),
    })
}

/// What the CSV gives for a claim, scaled.
fn evaluate(root: &Path, c: &Claim) -> Result<Vec<f64>, String> {
    let t = Table::load(root, &c.csv)?;
    let conds = conditions(&t, &c.filter)?;
    let rows: Vec<&Vec<String>> = t
        .rows
        .iter()
        .filter(|r| conds.iter().all(|f| f(r)))
        .collect();
    let (a, op, b) = ['/', '*', '-']
        .into_iter()
        .find_map(|op| c.column.split_once(op).map(|(a, b)| (a, op, Some(b))))
        .unwrap_or((c.column.as_str(), ' ', None));
    let a = t.col(a.trim())?;
    // The second operand is a column, or a number (`len-1`).
    let b = match b.map(str::trim) {
        None => None,
        Some(b) => Some(match number(b) {
            Some(x) => Err(x),
            None => Ok(t.col(b)?),
        }),
    };
    let read = |r: &[String], i: usize| {
        number(&r[i]).ok_or_else(|| format!("{:?} in column {} is not a number", r[i], t.header[i]))
    };
    let value = |r: &[String]| -> Result<f64, String> {
        let x = read(r, a)?;
        let Some(b) = b else { return Ok(x) };
        let y = match b {
            Ok(i) => read(r, i)?,
            Err(y) => y,
        };
        Ok(match op {
            '/' => x / y,
            '*' => x * y,
            _ => x - y,
        })
    };
    let scale = if c.scale.trim().is_empty() {
        1.0
    } else {
        number(&c.scale).ok_or_else(|| format!("scale {:?} is not a number", c.scale))?
    };
    let out = match c.agg.split_once('/') {
        None => {
            let v = rows
                .iter()
                .map(|r| value(r))
                .collect::<Result<Vec<_>, _>>()?;
            reduce(c.agg.trim(), &v)?
        }
        Some((outer, inner)) => {
            let (inner, keys) = inner
                .split_once(':')
                .ok_or_else(|| format!("{:?}: grouped aggregation needs `:keys`", c.agg))?;
            let keys = keys
                .split('+')
                .map(|k| t.col(k.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut order: Vec<Vec<&str>> = Vec::new();
            let mut groups: BTreeMap<Vec<&str>, Vec<f64>> = BTreeMap::new();
            for r in &rows {
                let key: Vec<&str> = keys.iter().map(|&k| r[k].as_str()).collect();
                if !groups.contains_key(&key) {
                    order.push(key.clone());
                }
                groups.entry(key).or_default().push(value(r)?);
            }
            let mut per_group = Vec::new();
            for key in &order {
                let v = reduce(inner.trim(), &groups[key])?;
                if v.len() != 1 {
                    return Err(format!("inner aggregation {inner:?} must give one number"));
                }
                per_group.push(v[0]);
            }
            reduce(outer.trim(), &per_group)?
        }
    };
    Ok(out.into_iter().map(|v| v * scale).collect())
}

/// `Ok` when the claim's quote is in its document and matches its CSV; otherwise why not.
fn check(root: &Path, c: &Claim) -> Result<(), String> {
    let text = squash(&section(root, &c.doc)?);
    let context = squash(if c.context.is_empty() {
        &c.quote
    } else {
        &c.context
    });
    if !text.contains(&context) {
        return Err(format!("{context:?} is not in {}", c.doc));
    }
    if !context.contains(&squash(&c.quote)) {
        return Err(format!("quote {:?} is not in its context", c.quote));
    }
    let mut quoted = numbers(&c.quote);
    if quoted.is_empty() {
        return Err(format!("quote {:?} holds no number", c.quote));
    }
    if !c.decimals.trim().is_empty() {
        let d: i32 = c
            .decimals
            .trim()
            .parse()
            .map_err(|_| format!("decimals {:?} is not an integer", c.decimals))?;
        quoted.iter_mut().for_each(|q| q.decimals = d);
    }
    let got = evaluate(root, c)?;
    // A range whose two ends round alike may be quoted as one number ("100% on every seed").
    if quoted.len() == 1 && got.len() == 2 && c.agg.split('/').next() == Some("range") {
        quoted.push(quoted[0]);
    }
    let shown: Vec<String> = got
        .iter()
        .zip(
            quoted
                .iter()
                .map(|q| q.decimals)
                .chain(std::iter::repeat(2)),
        )
        .map(|(v, d)| format!("{v:.*}", d.max(0) as usize))
        .collect();
    let agrees = got.len() == quoted.len()
        && got.iter().zip(&quoted).all(|(&v, q)| {
            let float = 1e-9 * q.value.abs().max(1.0);
            let rounding = 0.5 * 10f64.powi(-q.decimals) + float;
            match q.relation {
                None => (v - q.value).abs() <= rounding,
                Some('≥') => v >= q.value - float,
                Some('≤') => v <= q.value + float,
                Some('<') => v < q.value,
                _ => v > q.value,
            }
        });
    if agrees {
        Ok(())
    } else {
        Err(format!(
            "the doc says {:?}, the CSV gives {} (raw {:?}) from {} [{}] {} {}",
            c.quote,
            shown.join(" / "),
            got,
            c.csv,
            c.filter,
            c.column,
            c.agg
        ))
    }
}

fn failures(root: &Path, claims: &[Claim]) -> Vec<String> {
    claims
        .iter()
        .filter_map(|c| {
            check(root, c).err().map(|e| {
                let what = if c.context.is_empty() {
                    &c.quote
                } else {
                    &c.context
                };
                format!("claims.csv:{} ({}, {what:?}): {e}", c.line, c.doc)
            })
        })
        .collect()
}

#[test]
fn every_quoted_result_matches_its_csv() {
    let root = root();
    let text = std::fs::read_to_string(root.join("docs/results/claims.csv")).unwrap();
    let claims = parse_claims(&text).unwrap();
    assert!(claims.len() >= 50, "only {} claims", claims.len());
    let bad = failures(&root, &claims);
    assert!(
        bad.is_empty(),
        "{} of {} claims do not match:\n{}",
        bad.len(),
        claims.len(),
        bad.join("\n")
    );
}

#[test]
fn a_wrong_claim_is_reported() {
    let table = "doc,context,quote,csv,filter,column,agg,scale,decimals\n\
        # the sentiment lead: right, then the seed-0 value quoted as the mean, then text not there\n\
        docs/results/README.md,\"fine-tuned **85.8% (84.6–87.0)**\",85.8%,sentiment_seeds/summary.csv,role=final,test_acc,mean,100,\n\
        docs/results/README.md,\"fine-tuned **85.8% (84.6–87.0)**\",85.8%,sentiment_seeds/summary.csv,role=final;seed=0,test_acc,value,100,\n\
        README.md#Results,,\"fine-tuned **85.8% (84.6–87.0)**\",sentiment_seeds/summary.csv,role=final,test_acc,mean,100,\n\
";
    let claims = parse_claims(table).unwrap();
    assert_eq!(claims.len(), 3);
    assert_eq!(claims[1].line, 4);
    let root = root();
    assert_eq!(check(&root, &claims[0]), Ok(()));
    let wrong = check(&root, &claims[1]).unwrap_err();
    assert!(
        wrong.contains("\"85.8%\"") && wrong.contains("84.6"),
        "{wrong}"
    );
    let missing = check(&root, &claims[2]).unwrap_err();
    assert!(missing.contains("is not in README.md#Results"), "{missing}");
    let failed = failures(&root, &claims);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].starts_with("claims.csv:4 "), "{}", failed[0]);
}

#[test]
fn numbers_are_read_as_written() {
    let n =
        |q: &str| -> Vec<(f64, i32)> { numbers(q).iter().map(|q| (q.value, q.decimals)).collect() };
    assert_eq!(
        n("85.8% (84.6–87.0)"),
        vec![(85.8, 1), (84.6, 1), (87.0, 1)]
    );
    assert_eq!(
        n("600, 1275, 675"),
        vec![(600.0, 0), (1275.0, 0), (675.0, 0)]
    );
    assert_eq!(n("55 500 / 28 812"), vec![(55500.0, 0), (28812.0, 0)]);
    assert_eq!(n("10,568 and 1,056"), vec![(10568.0, 0), (1056.0, 0)]);
    assert_eq!(n("−0.3 to 2.08×"), vec![(-0.3, 1), (2.08, 2)]);
    assert_eq!(n("99.6–100"), vec![(99.6, 1), (100.0, 0)]);
    let bounds: Vec<_> = numbers("≥ 90%, 12 and (≤ 12.5%)")
        .iter()
        .map(|q| q.relation)
        .collect();
    assert_eq!(bounds, vec![Some('≥'), None, Some('≤')]);
    let csv = parse_csv("a,\"b, \"\"c\"\"\"\n# not a comment here\n", false).unwrap();
    assert_eq!(csv[0].1, vec!["a", "b, \"c\""]);
    assert_eq!(csv[1].1, vec!["# not a comment here"]);
}
