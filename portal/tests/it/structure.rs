//! The web modules' imports form no circle: handlers share helpers through
//! their own modules (`answers`, `views`, `pages`, `input`), never by importing
//! each other both ways. Read from the sources, so a new `use super::x` that
//! closes a circle fails here.

use std::collections::{BTreeMap, BTreeSet};

/// The web modules each module's code (not its comments) names as `super::x`.
fn web_imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("src/web") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        if path.extension().is_none_or(|e| e != "rs") || name == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let mut deps = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("super::") {
                let rest = &code[i + "super::".len()..];
                let dep: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if dep != name && dir.join(format!("{dep}.rs")).exists() {
                    deps.insert(dep);
                }
            }
            // `use super::{a, b::c}`: each module named in the braces.
            if let Some(group) = code.trim_start().strip_prefix("use super::{") {
                for part in group.split([',', '}']) {
                    let dep = part.trim().split("::").next().unwrap_or("").to_owned();
                    if dep != name && !dep.is_empty() && dir.join(format!("{dep}.rs")).exists() {
                        deps.insert(dep);
                    }
                }
            }
        }
        out.insert(name, deps);
    }
    out
}

#[test]
fn the_web_modules_import_each_other_without_a_circle() {
    let graph = web_imports();
    assert!(graph.len() >= 10, "{graph:?}");
    assert!(graph["shop"].contains("views"), "the reader sees imports");
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_owned());
        for d in graph.get(m).into_iter().flatten() {
            visit(d, graph, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut vec![], &mut done);
    }
}
