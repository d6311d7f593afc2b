//! The pre-initialised module made a component of the `python` world
//! (`guest-sdk/wit/runtime.wit`): its door import, `host.call(ptr, len, out_ptr_ptr,
//! out_len_ptr)`, rewritten into the world's `door.call`, which moves bytes through the
//! canonical ABI (answers are written through the module's own `host_alloc`, exported as
//! `cabi_realloc`); `turn` exported as the world's function, and `memory-span` added; and
//! its WASI preview 1
//! imports served by wasmtime's preview 1 adapter over preview 2, so that the sandbox's
//! bounds on files and `/tmp`, written against preview 2, hold for it.

use wasm_encoder::reencode::{Error, Reencode, utils};
use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
    Instruction, MemArg, TypeSection, ValType,
};
use wasmparser::{ExternalKind, KnownCustom, Name, NameSectionReader, Payload, TypeRef};
use wasmtime::error::Context as _;
use wasmtime::{bail, format_err};

/// The most of the linear memory `memory-span` returns, in 64 KiB pages: 96 MiB, under
/// the 128 MiB wasmtime lets a list returned to the host hold.
const SPAN_PAGES: i32 = 96 * 16;

/// The world the component targets.
pub(crate) const WIT: &str = include_str!("../../../../guest-sdk/wit/runtime.wit");

/// Where the module's pieces are, found in a first pass.
struct Door {
    /// The function index of the `host.call` import, and its type.
    host_call: u32,
    call_type: u32,
    /// `host_alloc`'s function index.
    alloc: u32,
    /// The C library's `__wasilibc_reset_preopens`, found by its name.
    reset_preopens: u32,
    /// The C stack's pointer, the global named `__stack_pointer`.
    stack_pointer: u32,
    /// How many types and functions the module has before ours are appended.
    types: u32,
    functions: u32,
}

impl Door {
    fn find(wasm: &[u8]) -> wasmtime::Result<Self> {
        let mut host_call = None;
        let mut alloc = None;
        let mut reset_preopens = None;
        let mut stack_pointer = None;
        let mut types = 0;
        let mut functions = 0;
        for payload in wasmparser::Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::TypeSection(section) => {
                    for group in section {
                        types += u32::try_from(group?.types().len())?;
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import?;
                        if let TypeRef::Func(ty) = import.ty {
                            if (import.module, import.name) == ("host", "call") {
                                host_call = Some((functions, ty));
                            }
                            functions += 1;
                        }
                    }
                }
                Payload::FunctionSection(section) => functions += section.count(),
                Payload::CustomSection(section) => {
                    if let KnownCustom::Name(names) = section.as_known() {
                        reset_preopens = reset_preopens.or(named(
                            names.clone(),
                            Subsection::Function,
                            "__wasilibc_reset_preopens",
                        )?);
                        stack_pointer =
                            stack_pointer.or(named(names, Subsection::Global, "__stack_pointer")?);
                    }
                }
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export?;
                        if export.name == "host_alloc" && export.kind == ExternalKind::Func {
                            alloc = Some(export.index);
                        }
                    }
                }
                _ => {}
            }
        }
        let (host_call, call_type) = host_call.context("the module imports no host.call")?;
        Ok(Self {
            host_call,
            call_type,
            alloc: alloc.context("the module exports no host_alloc")?,
            reset_preopens: reset_preopens
                .context("the module names no __wasilibc_reset_preopens")?,
            stack_pointer: stack_pointer.context("the module names no __stack_pointer")?,
            types,
            functions,
        })
    }

    fn door_type(&self) -> u32 {
        self.types
    }
    fn realloc_type(&self) -> u32 {
        self.types + 1
    }
    fn span_type(&self) -> u32 {
        self.types + 2
    }
    fn shim(&self) -> u32 {
        self.functions
    }
    fn realloc(&self) -> u32 {
        self.functions + 1
    }
    fn span(&self) -> u32 {
        self.functions + 2
    }
}

/// The kinds of item a name section names that the component needs.
#[derive(Clone, Copy)]
enum Subsection {
    Function,
    Global,
}

/// The index of the item `wanted` of `kind` in a name section, if it names one.
fn named(
    names: NameSectionReader<'_>,
    kind: Subsection,
    wanted: &str,
) -> wasmtime::Result<Option<u32>> {
    for subsection in names {
        let map = match (kind, subsection?) {
            (Subsection::Function, Name::Function(map))
            | (Subsection::Global, Name::Global(map)) => map,
            _ => continue,
        };
        for naming in map {
            let naming = naming?;
            if naming.name == wanted {
                return Ok(Some(naming.index));
            }
        }
    }
    Ok(None)
}

impl Reencode for Door {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, Error<Self::Error>> {
        Ok(if func == self.host_call {
            self.shim()
        } else {
            func
        })
    }

    fn parse_custom_section(
        &mut self,
        _module: &mut wasm_encoder::Module,
        _section: wasmparser::CustomSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        Ok(())
    }

    fn parse_type_section(
        &mut self,
        types: &mut TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        utils::parse_type_section(self, types, section)?;
        types.ty().function([ValType::I32; 3], []);
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        types.ty().function([], [ValType::I32]);
        Ok(())
    }

    fn parse_import_section(
        &mut self,
        imports: &mut ImportSection,
        section: wasmparser::ImportSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        for import in section.into_imports() {
            let import = import?;
            if (import.module, import.name) == ("host", "call") {
                imports.import(
                    "sluice:runtime/door@0.1.0",
                    "call",
                    EntityType::Function(self.door_type()),
                );
            } else {
                imports.import(import.module, import.name, self.entity_type(import.ty)?);
            }
        }
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        utils::parse_function_section(self, functions, section)?;
        functions.function(self.call_type);
        functions.function(self.realloc_type());
        functions.function(self.span_type());
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        utils::parse_code_section(self, code, section)?;
        code.function(&self.shim_body());
        let mut realloc = Function::new([]);
        realloc
            .instruction(&Instruction::LocalGet(3))
            .instruction(&Instruction::Call(self.alloc))
            .instruction(&Instruction::End);
        code.function(&realloc);
        code.function(&self.span_body());
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), Error<Self::Error>> {
        for export in section {
            let export = export?;
            if matches!(export.name, "memory" | "turn") {
                exports.export(export.name, self.export_kind(export.kind)?, export.index);
            }
        }
        exports.export("cabi_realloc", ExportKind::Func, self.realloc());
        exports.export("reset-preopens", ExportKind::Func, self.reset_preopens);
        exports.export("memory-span", ExportKind::Func, self.span());
        Ok(())
    }
}

impl Door {
    /// `host.call(ptr, len, out_ptr_ptr, out_len_ptr) -> 0` in terms of the canonical
    /// ABI's `call(ptr, len, ret)`, which writes the answer's pointer and length at `ret`:
    /// `out_ptr_ptr` serves as `ret`, its second word saved and put back.
    fn shim_body(&self) -> Function {
        let word = |offset| MemArg {
            offset,
            align: 2,
            memory_index: 0,
        };
        let (ptr, len, out_ptr, out_len, saved, answer_len) = (0, 1, 2, 3, 4, 5);
        let mut body = Function::new([(2, ValType::I32)]);
        body.instruction(&Instruction::LocalGet(out_ptr))
            .instruction(&Instruction::I32Load(word(4)))
            .instruction(&Instruction::LocalSet(saved))
            .instruction(&Instruction::LocalGet(ptr))
            .instruction(&Instruction::LocalGet(len))
            .instruction(&Instruction::LocalGet(out_ptr))
            .instruction(&Instruction::Call(self.host_call))
            .instruction(&Instruction::LocalGet(out_ptr))
            .instruction(&Instruction::I32Load(word(4)))
            .instruction(&Instruction::LocalSet(answer_len))
            .instruction(&Instruction::LocalGet(out_ptr))
            .instruction(&Instruction::LocalGet(saved))
            .instruction(&Instruction::I32Store(word(4)))
            .instruction(&Instruction::LocalGet(out_len))
            .instruction(&Instruction::LocalGet(answer_len))
            .instruction(&Instruction::I32Store(word(0)))
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::End);
        body
    }

    /// `memory-span`: the list (0, the memory's size, [`SPAN_PAGES`] at most), its
    /// pointer and length written where the canonical ABI reads a returned list from: 16
    /// bytes below the C stack's pointer, room the stack does not use, and nothing runs
    /// between this function's return and the host's reading.
    fn span_body(&self) -> Function {
        let word = |offset| MemArg {
            offset,
            align: 2,
            memory_index: 0,
        };
        let area = 0;
        let mut body = Function::new([(1, ValType::I32)]);
        body.instruction(&Instruction::GlobalGet(self.stack_pointer))
            .instruction(&Instruction::I32Const(16))
            .instruction(&Instruction::I32Sub)
            .instruction(&Instruction::LocalTee(area))
            .instruction(&Instruction::I32Const(0))
            .instruction(&Instruction::I32Store(word(0)))
            .instruction(&Instruction::LocalGet(area))
            // select(size, SPAN_PAGES, size < SPAN_PAGES), in bytes
            .instruction(&Instruction::MemorySize(0))
            .instruction(&Instruction::I32Const(SPAN_PAGES))
            .instruction(&Instruction::MemorySize(0))
            .instruction(&Instruction::I32Const(SPAN_PAGES))
            .instruction(&Instruction::I32LtU)
            .instruction(&Instruction::Select)
            .instruction(&Instruction::I32Const(16))
            .instruction(&Instruction::I32Shl)
            .instruction(&Instruction::I32Store(word(4)))
            .instruction(&Instruction::LocalGet(area))
            .instruction(&Instruction::End);
        body
    }
}

/// The component made of `snapshot`.
pub(crate) fn build(snapshot: &[u8]) -> wasmtime::Result<Vec<u8>> {
    let mut door = Door::find(snapshot)?;
    let mut module = wasm_encoder::Module::new();
    if let Err(e) = door.parse_core_module(&mut module, wasmparser::Parser::new(0), snapshot) {
        bail!("cannot rewrite the module: {e}");
    }
    let mut module = module.finish();
    let mut resolve = wit_parser::Resolve::default();
    let encoded = (|| {
        let package = resolve.push_source("runtime.wit", WIT)?;
        let world = resolve.select_world(&[package], Some("python"))?;
        wit_component::embed_component_metadata(
            &mut module,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )?;
        wit_component::ComponentEncoder::default()
            .module(&module)?
            .adapter(
                "wasi_snapshot_preview1",
                wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )?
            .encode()
    })();
    encoded.map_err(|e| format_err!("cannot make the runtime a component: {e:#}"))
}
