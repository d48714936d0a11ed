//! Wippy's typed Lua, erased at load.
//!
//! Wippy's Lua has gradual types: annotations on parameters, returns and locals
//! (`a: number`, `): (string?, error?)`, `local x: T =`), type declarations
//! (`type Name<T> = ...`), generic functions, variadic annotations (`...: T`) and casts
//! (`expr :: T`). warden runs such code by parsing it with `full_moon` (Luau's type grammar
//! plus Lua 5.4's) and blanking every type node with spaces, newlines kept, so the Lua
//! compiler sees plain Lua whose every token stays on its line and column: a runtime error
//! points at the user's line. This happens once per entry at load, never per spawn; code
//! that is already plain Lua is not touched (it compiles as it is, and full_moon never sees
//! it).
//!
//! Two forms of Wippy's grammar that Luau does not have are blanked before parsing, at the
//! token level: the `?` of an optional record field (`{name?: string}`) and the constraint
//! of a generic parameter (`<T: Constraint>`).
//!
//! The same parser answers one more question at load: which literal arguments contradict
//! a parameter's annotation ([`type_warnings`]).

use full_moon::ast::luau::{
    ExportedTypeDeclaration, ExportedTypeFunction, GenericDeclaration, LuauAttribute,
    TypeAssertion, TypeDeclaration, TypeFunction, TypeInstantiation, TypeSpecifier,
};
use full_moon::node::Node;
use full_moon::tokenizer::{Lexer, Symbol, Token, TokenType};
use full_moon::visitors::Visitor;
use full_moon::LuaVersion;
use std::borrow::Cow;
use std::ops::Range;

/// The grammar typed sources are parsed with: Lua 5.4 and Luau's types.
fn version() -> LuaVersion {
    LuaVersion::lua54().with_luau()
}

/// Parses with full_moon; None when the parser panics (it does on some malformed input,
/// found by `tests/properties.rs`): such a source counts as one it cannot parse.
fn parse(src: &str) -> Option<full_moon::ast::AstResult> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        full_moon::parse_fallible(src, version())
    }))
    .ok()
}

/// Makes `src` ready for the Lua compiler: plain Lua is returned as it is; typed Lua is
/// returned with its types blanked. `chunk` names the source in errors. A source that is
/// neither gives one line: Lua's own syntax error where Lua can name it (on the erased
/// text, so at the user's line), else the type parser's, as `chunk:line:column: message`.
pub fn prepare<'a>(lua: &mlua::Lua, src: &'a str, chunk: &str) -> Result<Cow<'a, str>, String> {
    let compile = |text: &str| {
        lua.load(text)
            .set_name(format!("@{chunk}"))
            .set_mode(mlua::ChunkMode::Text)
            .into_function()
            .map(|_| ())
    };
    let first = match compile(src) {
        Ok(()) => return Ok(Cow::Borrowed(src)),
        Err(e) => syntax_message(e),
    };
    let erased = erase(src);
    match compile(&erased.text) {
        Ok(()) => match erased.error {
            None => Ok(Cow::Owned(erased.text)),
            Some(e) => Err(format!("{chunk}:{e}")),
        },
        Err(e) if erased.changed => Err(syntax_message(e)),
        Err(_) => Err(first),
    }
}

fn syntax_message(e: mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message,
        other => other.to_string(),
    }
}

/// A source with its type syntax blanked.
#[derive(Debug)]
pub struct Erased {
    /// The source, every byte of type syntax replaced by a space (newlines kept).
    pub text: String,
    /// Whether anything was blanked.
    pub changed: bool,
    /// The first error of the typed parse, as `line:column: message`, if it failed.
    pub error: Option<String>,
}

/// Blanks the type syntax of `src` (see the module's documentation). When the source does
/// not parse, what could be parsed is still blanked and the first error is returned beside.
pub fn erase(src: &str) -> Erased {
    // the `!` of a non-nil assertion is not a token of Lua or Luau: blanked first
    let (unbanged, mut changed) = blank_bangs(src);
    let src_text = src;
    let src = unbanged.as_str();
    let mut bytes = src.as_bytes().to_vec();
    if let Some(tokens) = lex(src) {
        for r in wippy_only_ranges(&tokens) {
            changed |= blank(&mut bytes, r);
        }
        // `expr as T` is `expr :: T` (the same two bytes)
        for at in as_casts(&tokens) {
            bytes[at..at + 2].copy_from_slice(b"::");
            changed = true;
        }
    }
    // Blanking replaces whole tokens of ASCII punctuation, names and type text, so the
    // bytes stay UTF-8; fall back to the original if that ever did not hold.
    let pre = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => {
            return Erased {
                text: src.to_string(),
                changed: false,
                error: None,
            }
        }
    };
    // With Lua 5.3's operators on, `>>` is one token even where it closes two generic
    // lists (`Array<Array<number>>`); where the parser stops at one, split it and parse
    // again (the line stays the same).
    let mut pre = pre;
    // where a space was put in (final offsets), to find a declaration's text in `src`
    let mut inserted: Vec<usize> = Vec::new();
    // a source the typed parser fails on is left as it is: Lua's own error names it
    let Some(mut result) = parse(&pre) else {
        return Erased {
            text: src.to_string(),
            changed: false,
            error: None,
        };
    };
    for _ in 0..64 {
        let split = result.errors().iter().find_map(|e| {
            let at = e.range().0.bytes();
            (pre.get(at..at + 2) == Some(">>")).then_some(at)
        });
        let Some(at) = split else { break };
        pre.insert(at + 1, ' ');
        for e in inserted.iter_mut().filter(|e| **e > at) {
            *e += 1;
        }
        inserted.push(at + 1);
        let Some(again) = parse(&pre) else {
            return Erased {
                text: src.to_string(),
                changed: false,
                error: None,
            };
        };
        result = again;
    }
    let error = result.errors().first().map(|e| {
        let (start, _) = e.range();
        format!(
            "{}:{}: {} (typed Lua)",
            start.line(),
            start.character(),
            e.error_message()
        )
    });
    let mut ranges = TypeRanges::default();
    ranges.visit_ast(result.ast());
    let mut bytes = pre.into_bytes();
    for r in ranges.ranges {
        if r.end <= bytes.len() && str_boundary(&bytes, r.start) && str_boundary(&bytes, r.end) {
            changed |= blank(&mut bytes, r);
        }
    }
    // each `type Name = T` becomes the value of the type (en/lua/types.md, "Type Casts"),
    // on the declaration's own lines: `local Name=__wtype("Name",[=[T]=],{refs},{generics})`
    let to_src = |x: usize| x - inserted.iter().filter(|e| **e < x).count();
    ranges
        .decls
        .sort_by_key(|d| std::cmp::Reverse(d.span.start));
    for d in ranges.decls {
        let (a, b) = (to_src(d.def.start), to_src(d.def.end));
        let Some(def) = src_text.get(a..b) else {
            continue;
        };
        if d.span.end > bytes.len()
            || !str_boundary(&bytes, d.span.start)
            || !str_boundary(&bytes, d.span.end)
        {
            continue;
        }
        let mut code = declaration_code(&d.name, def, &d.generics);
        let lines = |t: &[u8]| t.iter().filter(|b| **b == b'\n').count();
        for _ in lines(code.as_bytes())..lines(&bytes[d.span.clone()]) {
            code.push('\n');
        }
        bytes.splice(d.span.clone(), code.into_bytes());
        changed = true;
    }
    let text = String::from_utf8(bytes).unwrap_or_else(|_| src.to_string());
    Erased {
        text,
        changed,
        error,
    }
}

fn str_boundary(bytes: &[u8], i: usize) -> bool {
    i >= bytes.len() || (bytes[i] as i8) >= -0x40
}

/// Replaces the bytes in `r` by spaces, keeping line breaks. Returns whether any changed.
fn blank(bytes: &mut [u8], r: Range<usize>) -> bool {
    let mut changed = false;
    for b in &mut bytes[r] {
        if *b != b'\n' && *b != b'\r' && *b != b' ' {
            *b = b' ';
            changed = true;
        }
    }
    changed
}

/// The bytes a node's own tokens cover (trivia excluded). Taken from the tokens rather
/// than `Node::range`, which ends a parenthesised return type before its `)`; phantom
/// tokens of a failed parse (position 0..0) are skipped.
fn token_span(node: &impl Node) -> Option<Range<usize>> {
    let mut span: Option<Range<usize>> = None;
    for t in node.tokens() {
        let (a, b) = (
            t.token().start_position().bytes(),
            t.token().end_position().bytes(),
        );
        if a >= b {
            continue;
        }
        span = Some(match span {
            None => a..b,
            Some(s) => s.start.min(a)..s.end.max(b),
        });
    }
    span
}

/// A `type` declaration: where it is, its name, its generic parameters and where its
/// definition is.
struct Decl {
    span: Range<usize>,
    name: String,
    generics: Vec<String>,
    def: Range<usize>,
}

/// Collects the byte ranges of type syntax in an AST, and the type declarations.
#[derive(Default)]
struct TypeRanges {
    ranges: Vec<Range<usize>>,
    decls: Vec<Decl>,
}

impl TypeRanges {
    /// Records the span of a node's own tokens (see [`token_span`]).
    fn add(&mut self, node: &impl Node) {
        if let Some(s) = token_span(node) {
            self.ranges.push(s);
        }
    }
}

impl Visitor for TypeRanges {
    fn visit_type_specifier(&mut self, node: &TypeSpecifier) {
        self.add(node);
    }
    fn visit_type_assertion(&mut self, node: &TypeAssertion) {
        self.add(node);
    }
    fn visit_type_declaration(&mut self, node: &TypeDeclaration) {
        self.add(node);
        let generics = node
            .generics()
            .map(|g| {
                g.generics()
                    .iter()
                    .map(|p| match p.parameter() {
                        full_moon::ast::luau::GenericParameterInfo::Name(n) => {
                            n.token().to_string()
                        }
                        full_moon::ast::luau::GenericParameterInfo::Variadic { name, .. } => {
                            name.token().to_string()
                        }
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let (Some(span), Some(def)) = (token_span(node), token_span(node.type_definition())) {
            self.decls.push(Decl {
                span,
                name: node.type_name().token().to_string(),
                generics,
                def,
            });
        }
    }
    fn visit_exported_type_declaration(&mut self, node: &ExportedTypeDeclaration) {
        self.add(node);
    }
    fn visit_type_function(&mut self, node: &TypeFunction) {
        self.add(node);
    }
    fn visit_exported_type_function(&mut self, node: &ExportedTypeFunction) {
        self.add(node);
    }
    fn visit_generic_declaration(&mut self, node: &GenericDeclaration) {
        self.add(node);
    }
    fn visit_type_instantiation(&mut self, node: &TypeInstantiation) {
        self.add(node);
    }
    fn visit_luau_attribute(&mut self, node: &LuauAttribute) {
        self.add(node);
    }
}

/// The tokens of `src`, or None when it does not tokenize.
fn lex(src: &str) -> Option<Vec<Token>> {
    match Lexer::new(src, version()).collect() {
        full_moon::tokenizer::LexerResult::Ok(t) => Some(t),
        _ => None,
    }
}

/// The tokens that are not whitespace or comments.
fn significant(tokens: &[Token]) -> Vec<&Token> {
    tokens
        .iter()
        .filter(|t| !t.token_type().is_trivia())
        .collect()
}

/// The primitive types a literal can be checked against.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Prim {
    Number,
    Integer,
    String,
    Boolean,
}

impl Prim {
    fn of_annotation(t: &full_moon::ast::luau::TypeInfo) -> Option<Prim> {
        match t {
            full_moon::ast::luau::TypeInfo::Basic(name) => {
                match name.token().to_string().as_str() {
                    "number" => Some(Prim::Number),
                    "integer" => Some(Prim::Integer),
                    "string" => Some(Prim::String),
                    "boolean" => Some(Prim::Boolean),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Prim::Number => "number",
            Prim::Integer => "integer",
            Prim::String => "string",
            Prim::Boolean => "boolean",
        }
    }
}

/// A literal argument: its type (`"integer"`, `"string"`...) and its text.
type Literal = (&'static str, String);

/// A literal argument and what it is: `(type, text)`.
fn literal(e: &full_moon::ast::Expression) -> Option<Literal> {
    use full_moon::ast::Expression;
    match e {
        Expression::String(t) => Some(("string", t.token().to_string())),
        Expression::Number(t) => {
            let text = t.token().to_string();
            let integral = !text.contains(['.', 'e', 'E']) || text.starts_with("0x");
            Some((if integral { "integer" } else { "number" }, text))
        }
        Expression::Symbol(t) => match t.token().to_string().as_str() {
            s @ ("true" | "false") => Some(("boolean", s.to_string())),
            _ => None,
        },
        _ => None,
    }
}

fn accepts(want: Prim, got: &str) -> bool {
    match want {
        Prim::Number => got == "number" || got == "integer",
        Prim::Integer => got == "integer",
        Prim::String => got == "string",
        Prim::Boolean => got == "boolean",
    }
}

/// Functions of a file with the primitive types of their annotated parameters, and the
/// calls made by name with literal arguments.
#[derive(Default)]
struct Signatures {
    /// name as called (`add`, `M.add`) -> parameter types (None: not a checked type)
    functions: std::collections::HashMap<String, Vec<Option<Prim>>>,
    /// (line, called name, literal arguments: (type, text) or None)
    calls: Vec<(usize, String, Vec<Option<Literal>>)>,
}

fn params(body: &full_moon::ast::FunctionBody) -> Vec<Option<Prim>> {
    body.parameters()
        .iter()
        .zip(body.type_specifiers())
        .map(|(p, t)| match p {
            full_moon::ast::Parameter::Name(_) => {
                t.and_then(|t| Prim::of_annotation(t.type_info()))
            }
            _ => None,
        })
        .collect()
}

impl Visitor for Signatures {
    fn visit_local_function(&mut self, node: &full_moon::ast::LocalFunction) {
        let name = node.name().token().to_string();
        self.functions.insert(name, params(node.body()));
    }

    fn visit_function_declaration(&mut self, node: &full_moon::ast::FunctionDeclaration) {
        let n = node.name();
        if n.method_name().is_some() {
            return; // `a:b` calls pass self first: not checked
        }
        let name: Vec<String> = n.names().iter().map(|t| t.token().to_string()).collect();
        self.functions.insert(name.join("."), params(node.body()));
    }

    fn visit_function_call(&mut self, node: &full_moon::ast::FunctionCall) {
        use full_moon::ast::{Call, FunctionArgs, Index, Prefix, Suffix};
        let Prefix::Name(first) = node.prefix() else {
            return;
        };
        let mut name = first.token().to_string();
        let suffixes: Vec<&Suffix> = node.suffixes().collect();
        let Some((last, path)) = suffixes.split_last() else {
            return;
        };
        for s in path {
            match s {
                Suffix::Index(Index::Dot { name: n, .. }) => {
                    name.push('.');
                    name.push_str(&n.token().to_string());
                }
                _ => return,
            }
        }
        let Suffix::Call(Call::AnonymousCall(args)) = last else {
            return;
        };
        let FunctionArgs::Parentheses { arguments, .. } = &**args else {
            return;
        };
        let line = first.token().start_position().line();
        let lits = arguments.iter().map(literal).collect();
        self.calls.push((line, name, lits));
    }
}

/// Plain type errors in typed Lua that need no inference: a call, by a function's name in
/// the same file, that passes a literal of another primitive type to a parameter annotated
/// `number`, `integer`, `string` or `boolean` (`add("1", 2)` to `add(a: number, b:
/// number)`). Returns `(line, message)` pairs; a source that does not parse gives none
/// (its syntax error is reported instead).
pub fn type_warnings(src: &str) -> Vec<(usize, String)> {
    let Some(result) = parse(src).filter(|r| r.errors().is_empty()) else {
        return Vec::new();
    };
    let mut sig = Signatures::default();
    sig.visit_ast(result.ast());
    let mut out = Vec::new();
    for (line, name, args) in &sig.calls {
        let Some(params) = sig.functions.get(name) else {
            continue;
        };
        for (i, (want, got)) in params.iter().zip(args).enumerate() {
            if let (Some(want), Some((got, text))) = (want, got) {
                if !accepts(*want, got) {
                    out.push((
                        *line,
                        format!(
                            "argument {} of {name}: expected {}, got {got} {text}",
                            i + 1,
                            want.name()
                        ),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

fn symbol(t: &Token) -> Option<Symbol> {
    match t.token_type() {
        TokenType::Symbol { symbol } => Some(*symbol),
        _ => None,
    }
}

fn is_ident(t: &Token) -> bool {
    matches!(t.token_type(), TokenType::Identifier { .. })
}

fn ident_is(t: &Token, name: &str) -> bool {
    matches!(t.token_type(), TokenType::Identifier { identifier } if identifier.as_str() == name)
}

fn span(t: &Token) -> Range<usize> {
    t.start_position().bytes()..t.end_position().bytes()
}

/// The ranges of Wippy's two forms that Luau lacks: the `?` of `name?: T` and the
/// `: Constraint` of a generic parameter in `function f<T: C>` / `type N<T: C>`.
fn wippy_only_ranges(tokens: &[Token]) -> Vec<Range<usize>> {
    let toks = significant(tokens);
    let mut out = validator_ranges(&toks);
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        // `name ? :` is never Lua, and never Luau either (`T?` is followed by a type's end).
        if is_ident(t)
            && toks.get(i + 1).and_then(|t| symbol(t)) == Some(Symbol::QuestionMark)
            && toks.get(i + 2).and_then(|t| symbol(t)) == Some(Symbol::Colon)
        {
            out.push(span(toks[i + 1]));
            i += 3;
            continue;
        }
        // the `<` that opens a generic list: after `function`, `function name(.name)*(:name)?`
        // or `type Name`
        let open = if symbol(t) == Some(Symbol::Function) {
            let mut j = i + 1;
            while j < toks.len() && is_ident(toks[j]) {
                match toks.get(j + 1).and_then(|t| symbol(t)) {
                    Some(Symbol::Dot) | Some(Symbol::Colon) => j += 2,
                    _ => {
                        j += 1;
                        break;
                    }
                }
            }
            Some(j)
        } else if ident_is(t, "type")
            && toks.get(i + 1).is_some_and(|t| is_ident(t))
            && (i == 0 || !matches!(symbol(toks[i - 1]), Some(Symbol::Dot) | Some(Symbol::Colon)))
        {
            Some(i + 2)
        } else {
            None
        };
        if let Some(j) = open {
            if toks.get(j).and_then(|t| symbol(t)) == Some(Symbol::LessThan) {
                i = constraints(&toks, j, &mut out);
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Scans the generic list opening at `toks[open]` (`<`) and records the `: Constraint` of
/// each parameter. Returns the index after the list.
fn constraints(toks: &[&Token], open: usize, out: &mut Vec<Range<usize>>) -> usize {
    let mut depth = 0i32; // nesting of <>, (), {}, [] inside the list
    let mut blanking: Option<usize> = None; // start byte of a constraint being blanked
    let mut i = open + 1;
    while i < toks.len() {
        let t = toks[i];
        let s = symbol(t);
        let closes = match s {
            Some(Symbol::GreaterThan) => 1,
            Some(Symbol::DoubleGreaterThan) => 2,
            _ => 0,
        };
        let at_top = depth == 0;
        if at_top && (closes > 0 || s == Some(Symbol::Comma)) {
            if let Some(start) = blanking.take() {
                out.push(start..t.start_position().bytes());
            }
            if closes > 0 {
                return i + 1;
            }
        } else if at_top
            && blanking.is_none()
            && s == Some(Symbol::Colon)
            && i > open + 1
            && is_ident(toks[i - 1])
        {
            blanking = Some(t.start_position().bytes());
        }
        match s {
            Some(
                Symbol::LessThan | Symbol::LeftParen | Symbol::LeftBrace | Symbol::LeftBracket,
            ) => depth += 1,
            Some(Symbol::RightParen | Symbol::RightBrace | Symbol::RightBracket) => depth -= 1,
            _ if closes > 0 => depth -= closes,
            _ => {}
        }
        if depth < 0 {
            // `>>` closing a nested list and this one: the first `>` belongs to the
            // constraint, blanked with it
            if let Some(start) = blanking.take() {
                out.push(start..t.start_position().bytes() + 1);
            }
            return i + 1;
        }
        i += 1;
    }
    i
}

/// The Lua that makes a declared type's value: `local Name=__wtype("Name",[=[T]=],
/// {Ref=Ref,...},{"T",...})`, the definition's text kept as written (its line breaks too).
fn declaration_code(name: &str, def: &str, generics: &[String]) -> String {
    let mut level = 1;
    while def.contains(&format!("]{}]", "=".repeat(level))) {
        level += 1;
    }
    let eq = "=".repeat(level);
    let refs: Vec<String> = referenced_names(def, generics)
        .into_iter()
        .map(|n| format!("{n}={n}"))
        .collect();
    let gens: Vec<String> = generics.iter().map(|g| format!("{g:?}")).collect();
    format!(
        "local {name}=__wtype({name:?},[{eq}[{def}]{eq}],{{{}}},{{{}}})",
        refs.join(","),
        gens.join(",")
    )
}

/// The names of other types a definition uses (not field names, validators, generics or
/// built-in types).
fn referenced_names(def: &str, generics: &[String]) -> Vec<String> {
    const BUILTIN: &[&str] = &[
        "any", "unknown", "never", "nil", "boolean", "bool", "number", "integer", "string",
        "function", "table", "thread", "userdata", "error", "true", "false", "typeof", "Array",
        "array", "Map", "map",
    ];
    let Some(tokens) = lex(def) else {
        return Vec::new();
    };
    let toks = significant(&tokens);
    let mut out: Vec<String> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let TokenType::Identifier { identifier } = t.token_type() else {
            continue;
        };
        let name = identifier.as_str();
        let before = i.checked_sub(1).and_then(|j| symbol(toks[j]));
        let after = toks.get(i + 1).and_then(|t| symbol(t));
        let is_field = matches!(after, Some(Symbol::Colon) | Some(Symbol::QuestionMark))
            && before.is_some_and(|b| {
                matches!(b, Symbol::LeftBrace | Symbol::Comma | Symbol::Semicolon)
            });
        let is_validator = toks
            .get(i.wrapping_sub(1))
            .is_some_and(|t| t.to_string() == "@");
        if is_field
            || is_validator
            || matches!(before, Some(Symbol::Dot))
            || BUILTIN.contains(&name)
            || generics.iter().any(|g| g == name)
            || out.iter().any(|o| o == name)
        {
            continue;
        }
        out.push(name.to_string());
    }
    out
}

/// Blanks the `!` of a non-nil assertion (`user!.name`, `(user!)`): a `!` right after a
/// name, `)` or `]`, outside strings and comments. Returns the text and whether it changed.
fn blank_bangs(src: &str) -> (String, bool) {
    if !src.contains('!') {
        return (src.to_string(), false);
    }
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut changed = false;
    let mut i = 0;
    // the level of a long bracket opening at b[at] (`[[`, `[==[`), if one does
    let long_open = |at: usize| -> Option<usize> {
        if b.get(at) != Some(&b'[') {
            return None;
        }
        let mut j = at + 1;
        while b.get(j) == Some(&b'=') {
            j += 1;
        }
        (b.get(j) == Some(&b'[')).then_some(j - at - 1)
    };
    let skip_long = |from: usize, level: usize| -> usize {
        let close = format!("]{}]", "=".repeat(level));
        src[from..]
            .find(&close)
            .map_or(b.len(), |k| from + k + close.len())
    };
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i += 2;
                if let Some(level) = long_open(i) {
                    i = skip_long(i + level + 2, level);
                } else {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                }
            }
            b'[' if long_open(i).is_some() => {
                let level = long_open(i).unwrap_or(0);
                i = skip_long(i + level + 2, level);
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'!' => {
                let prev = i.checked_sub(1).map(|j| b[j]);
                let postfix = prev.is_some_and(|p| {
                    p.is_ascii_alphanumeric() || p == b'_' || p == b')' || p == b']'
                });
                if postfix && b.get(i + 1) != Some(&b'=') {
                    out[i] = b' ';
                    changed = true;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    (
        String::from_utf8(out).unwrap_or_else(|_| src.to_string()),
        changed,
    )
}

/// The positions of the `as` of `expr as T` (Wippy's unsafe cast, Luau's `::`): an `as`
/// after the end of an expression and before the start of a type.
fn as_casts(tokens: &[Token]) -> Vec<usize> {
    let toks = significant(tokens);
    let mut out = Vec::new();
    for i in 1..toks.len().saturating_sub(1) {
        if !ident_is(toks[i], "as") {
            continue;
        }
        let prev = toks[i - 1];
        let ends_expr = is_ident(prev)
            || matches!(
                prev.token_type(),
                TokenType::StringLiteral { .. } | TokenType::Number { .. }
            )
            || matches!(
                symbol(prev),
                Some(
                    Symbol::RightParen
                        | Symbol::RightBracket
                        | Symbol::RightBrace
                        | Symbol::Nil
                        | Symbol::True
                        | Symbol::False
                )
            );
        let next = toks[i + 1];
        let starts_type = is_ident(next)
            || matches!(
                symbol(next),
                Some(Symbol::LeftBrace | Symbol::LeftParen | Symbol::Nil)
            )
            || matches!(next.token_type(), TokenType::StringLiteral { .. });
        if ends_expr && starts_type {
            out.push(toks[i].start_position().bytes());
        }
    }
    out
}

/// The ranges of Wippy's validators in types (`@min(0)`, `@pattern("^.+$")`): an `@`, a
/// name and a parenthesised argument list.
fn validator_ranges(toks: &[&Token]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 2 < toks.len() {
        let at_sign = toks[i].to_string() == "@";
        if at_sign && is_ident(toks[i + 1]) && symbol(toks[i + 2]) == Some(Symbol::LeftParen) {
            let mut depth = 0;
            let mut j = i + 2;
            while j < toks.len() {
                match symbol(toks[j]) {
                    Some(Symbol::LeftParen) => depth += 1,
                    Some(Symbol::RightParen) => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            if j < toks.len() {
                out.push(toks[i].start_position().bytes()..toks[j].end_position().bytes());
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erased(src: &str) -> String {
        let e = erase(src);
        assert!(e.error.is_none(), "{src}: {:?}", e.error);
        squeeze(&e.text)
    }

    fn squeeze(s: &str) -> String {
        s.split_whitespace().collect()
    }

    #[test]
    fn blanks_each_form_of_type_syntax() {
        let cases = [
            ("local x: number = 1", "local x = 1"),
            (
                "local function f(a: number, b: string?): (string?, error?) return a end",
                "local function f(a, b) return a end",
            ),
            // a declaration is the type's value (en/lua/types.md)
            (
                "type P = {x: number, y: number?}\nlocal p = 1",
                "local P=__wtype(\"P\",[=[{x: number, y: number?}]=],{},{}) local p = 1",
            ),
            (
                "export type P<T> = {x: T} local p = 1",
                "local P=__wtype(\"P\",[=[{x: T}]=],{},{\"T\"}) local p = 1",
            ),
            (
                "type U = 'a' | \"b\" type I = A & B",
                "local U=__wtype(\"U\",[=['a' | \"b\"]=],{},{}) local I=__wtype(\"I\",[=[A & B]=],{A=A,B=B},{})",
            ),
            (
                "type F = (number, string) -> boolean",
                "local F=__wtype(\"F\",[=[(number, string) -> boolean]=],{},{})",
            ),
            (
                "local function id<T>(x: T): T return x end",
                "local function id(x) return x end",
            ),
            (
                "local function f(...: number) end",
                "local function f(...) end",
            ),
            ("local y = (x :: any).foo", "local y = (x ).foo"),
            ("local a = b :: number + 1", "local a = b + 1"),
            ("for i: number = 1, 2 do end", "for i = 1, 2 do end"),
            (
                "for k: string, v: any in pairs(t) do end",
                "for k, v in pairs(t) do end",
            ),
            (
                "function M:g(x: {a: number}): {string} return {} end",
                "function M:g(x) return {} end",
            ),
            (
                "type P = {name?: string, age?: number @min(0)}",
                "local P=__wtype(\"P\",[=[{name?: string, age?: number @min(0)}]=],{},{})",
            ),
            // Wippy's unsafe cast `as`, the non-nil assertion `!`
            ("local u = data as User", "local u = data"),
            ("local n = (user!).name .. t[1]!", "local n = (user ).name .. t[1]"),
            ("local s = \"a!\" -- b!", "local s = \"a!\" -- b!"),
            (
                "local function f<T: number>(x: T): T return x end",
                "local function f(x) return x end",
            ),
            (
                "type X<K: string, V: {n: number}> = {a: V}",
                "local X=__wtype(\"X\",[=[{a: V}]=],{},{\"K\",\"V\"})",
            ),
            (
                "local function f<T: Array<number>>(x: T) end",
                "local function f(x) end",
            ),
            (
                "local x: Array<Array<number>> = {} local y = 8 >> 1",
                "local x = {} local y = 8 >> 1",
            ),
            (
                "local f = function<T>(x: T): T return x end",
                "local f = function(x) return x end",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(erased(src), squeeze(want), "{src}");
        }
    }

    #[test]
    fn plain_lua_is_left_alone() {
        for src in [
            "local t = {} t.type = 1 local type = type(t)",
            "local x <const> = 5 goto done ::done::",
            "local a = 1 // 2 local b = 3 & 5 | 6 ~ 7 << 1 >> 2 local c = ~a",
            "local s = 'a: b' -- x: number",
        ] {
            let e = erase(src);
            assert!(!e.changed, "{src}: {}", e.text);
            assert_eq!(e.text, src);
        }
    }

    #[test]
    fn literal_arguments_of_the_wrong_type_are_warned_about() {
        let src = r#"
local function add(a: number, b: integer): number return a + b end
local M = {}
function M.greet(name: string, loud: boolean?, n: integer) end
add(1, 2)
add("1", 2.5)
M.greet("ada", "yes", 3)
M.greet(42, nil, 1.0)
local untyped = function(x) end
untyped("anything")
"#;
        assert_eq!(
            type_warnings(src),
            [
                (
                    6,
                    "argument 1 of add: expected number, got string \"1\"".to_string()
                ),
                (
                    6,
                    "argument 2 of add: expected integer, got number 2.5".to_string()
                ),
                (
                    8,
                    "argument 1 of M.greet: expected string, got integer 42".to_string()
                ),
                (
                    8,
                    "argument 3 of M.greet: expected integer, got number 1.0".to_string()
                ),
            ]
        );
    }

    #[test]
    fn lines_and_columns_are_kept() {
        let src = "type P = {\n  x: number,\n}\nlocal function f(a: number,\n  b: string): number\n  return a\nend\n";
        let e = erase(src);
        assert_eq!(e.text.lines().count(), src.lines().count());
        assert_eq!(e.text.lines().nth(5), Some("  return a"));
    }

    #[test]
    fn a_typed_syntax_error_names_its_line() {
        let e = erase("local x: number = 1\nlocal y: = 2\n");
        let err = e.error.expect("an error");
        assert!(err.starts_with("2:"), "{err}");
    }
}
