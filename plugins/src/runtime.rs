//! The sandbox: one wasmtime [`Engine`] per process with the pooling
//! instance allocator (a call takes a pre-allocated slot instead of mapping
//! memory), and per call a fresh [`Store`] bounded four ways:
//!
//! - CPU: fuel (`SandboxLimits::fuel` WebAssembly operations per call);
//! - wall clock: epoch interruption, a ticker thread advancing the epoch
//!   every [`TICK`]; at each tick the call yields to its executor and is
//!   interrupted once its deadline has passed;
//! - memory and tables: a [`ResourceLimiter`] refusing growth past the
//!   limits (a refusal traps, so a memory bomb ends the call at once), under
//!   the pool's own per-slot maximum;
//! - stack: `max_wasm_stack`.
//!
//! A module may import only the `convergio` host functions ([`HOST_MODULE`])
//! of its kind: `log` for every plugin, and `call_agent` for plugin agents
//! only (a guardrail importing it is refused when loaded, `ForbiddenImport`);
//! beyond those, only the host functions of the capabilities its version
//! was granted ([`crate::grants`]: `clock`, `random`, `env`). Anything
//! else (WASI files, sockets, clocks, environment, an ungranted host
//! function) is refused when the module is loaded, so there is no
//! filesystem or network inside the sandbox ever, and no clock, randomness
//! or environment unless granted. `call_agent` hands the call to the plugin
//! agent's [`crate::calls::AgentCaller`]; the time it waits is not charged to
//! the deadline (its own budget bounds it, see [`crate::calls`]). Each call
//! instantiates afresh (cheap from the pool and a pre-linked
//! [`InstancePre`]), so no state leaks between calls.
//!
//! Calls are asynchronous: the module runs on a fiber (a pooled stack) that
//! yields to the executor at every epoch tick, so a plugin running to its
//! deadline holds an event-loop thread for at most one [`TICK`] at a time
//! and a short call costs no thread hop (see the crate README's figures).
//! [`PluginRuntime::call_blocking`] drives the same call on the current
//! thread, for code that is already off the event loop.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasmtime::{
    Caller, Config, Engine, Extern, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};

use crate::calls::{self, InvocationCalls, CALL_AGENT_IMPORT};
use crate::grants::{
    self, Grant, Grants, CLOCK_MS_IMPORT, ENV_IMPORT, MONOTONIC_NS_IMPORT, RANDOM_IMPORT,
};
use crate::PluginError;

/// The one import module a plugin may use.
pub const HOST_MODULE: &str = "convergio";

/// The host functions of [`HOST_MODULE`] every plugin may import (ABI v1):
/// `log(ptr, len)`. Those of a granted capability come on top
/// ([`Grant::host_functions`]).
pub const HOST_FUNCTIONS: &[&str] = &["log"];

/// The host functions a plugin agent may import (agent ABI v1): `log` and
/// `call_agent(ptr, len) -> i64`.
pub const AGENT_HOST_FUNCTIONS: &[&str] = &["log", CALL_AGENT_IMPORT];

/// The export a plugin agent runs (agent ABI v1, see the crate README).
pub const AGENT_EXPORT: &str = "handle";

/// The ABI version this runtime speaks (see the crate README).
pub const ABI_VERSION: u32 = 1;

/// Room on a call's fiber stack beyond the WebAssembly stack, for the host
/// functions (`call_agent` encodes its answer there).
const HOST_STACK_BYTES: usize = 1024 * 1024;

/// How often the epoch advances: the wall-clock deadline's resolution, and
/// the longest a running plugin holds its thread before it yields.
pub const TICK: Duration = Duration::from_millis(2);

/// Bounds on every plugin call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxLimits {
    /// WebAssembly operations one call may execute (default 50 million,
    /// tens of milliseconds of CPU).
    pub fuel: u64,
    /// Wall-clock bound on one call, in milliseconds (default 100).
    pub deadline_ms: u64,
    /// Largest linear memory of one instance, in bytes (default 16 MiB).
    pub memory_bytes: usize,
    /// Largest table of one instance, in elements (default 10 000).
    pub table_elements: usize,
    /// Largest WebAssembly stack, in bytes (default 512 KiB).
    pub max_stack_bytes: usize,
    /// Instances alive at once across all plugins (default 32): calls
    /// beyond it are refused as unavailable.
    pub max_instances: u32,
    /// Largest answer a call may return, in bytes (default 4 MiB).
    pub max_output_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            fuel: 50_000_000,
            deadline_ms: 100,
            memory_bytes: 16 * 1024 * 1024,
            table_elements: 10_000,
            max_stack_bytes: 512 * 1024,
            max_instances: 32,
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The engine and its epoch ticker; cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    limits: Arc<SandboxLimits>,
    env: Arc<BTreeMap<String, String>>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Stops the epoch thread when the last runtime handle is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled, checked, pre-linked module.
#[derive(Clone)]
pub struct LoadedModule {
    name: String,
    pre: InstancePre<CallState>,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// === impl LoadedModule ===

impl LoadedModule {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the module exports `name`.
    pub fn exports(&self, name: &str) -> bool {
        self.pre.module().get_export(name).is_some()
    }
}

/// Per call state: the limiter (and whether it refused something), the
/// agent calls the invocation may make, when its own running time ends
/// (read at every epoch tick), when it started (`monotonic_ns`) and the
/// values `env` reads.
struct CallState {
    limiter: Limiter,
    calls: Option<InvocationCalls>,
    run_until: Instant,
    started: Instant,
    env: Arc<BTreeMap<String, String>>,
}

struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            // An error (not `Ok(false)`) traps: a bomb stops here instead of
            // spinning on `memory.grow` returning -1.
            self.refused = true;
            return Err(wasmtime::Error::msg("memory limit"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.refused = true;
            return Err(wasmtime::Error::msg("table limit"));
        }
        Ok(true)
    }
}

// === impl PluginRuntime ===

impl PluginRuntime {
    /// An engine enforcing `limits`, with its epoch ticker thread.
    pub fn new(limits: SandboxLimits) -> Result<Self, PluginError> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(limits.max_instances)
            .total_memories(limits.max_instances)
            .total_tables(limits.max_instances)
            .total_component_instances(0)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(limits.memory_bytes)
            .table_elements(limits.table_elements);
        // One fiber stack per running call, pooled like the instances; it
        // holds the WebAssembly stack and the host functions' frames.
        pool.total_stacks(limits.max_instances);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_stack_bytes)
            .async_stack_size(limits.max_stack_bytes.saturating_add(HOST_STACK_BYTES))
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|error| PluginError::Unavailable {
            detail: format!("starting the WebAssembly engine failed: {error}"),
        })?;
        let mut linker = Linker::new(&engine);
        // The one host function of ABI v1: a bounded debug log line.
        linker
            .func_wrap(
                HOST_MODULE,
                "log",
                |mut caller: wasmtime::Caller<'_, CallState>, ptr: i32, len: i32| {
                    let Some(wasmtime::Extern::Memory(memory)) = caller.get_export("memory") else {
                        return;
                    };
                    let (Ok(start), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
                        return;
                    };
                    let end = start.saturating_add(len.min(1024));
                    if let Some(bytes) = memory.data(&caller).get(start..end) {
                        tracing::debug!(line = %String::from_utf8_lossy(bytes), "plugin log");
                    }
                },
            )
            .map_err(|error| PluginError::Unavailable {
                detail: format!("defining the host functions failed: {error}"),
            })?;
        // Plugin agents' one way out: a call through their caller (the
        // gateway's pipeline, as the plugin's principal). The fiber is
        // suspended while the call is made.
        linker
            .func_wrap_async(
                HOST_MODULE,
                CALL_AGENT_IMPORT,
                |mut caller: Caller<'_, CallState>, (ptr, len): (i32, i32)| {
                    Box::new(async move {
                        let answer = call_agent(&mut caller, ptr, len).await;
                        write_answer(&mut caller, &answer).await
                    })
                },
            )
            .map_err(|error| PluginError::Unavailable {
                detail: format!("defining the host functions failed: {error}"),
            })?;
        define_granted(&mut linker)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticking = engine.clone();
        let stop_flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|error| PluginError::Unavailable {
                detail: format!("starting the epoch thread failed: {error}"),
            })?;
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            limits: Arc::new(limits),
            env: Arc::new(BTreeMap::new()),
            _ticker: Arc::new(Ticker { stop }),
        })
    }

    /// The values the `env` host function answers (`plugins.env`; none by
    /// default), for plugins granted `env`.
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// The bounds every call gets.
    pub fn limits(&self) -> &SandboxLimits {
        &self.limits
    }

    /// [`Self::load_granted`] without any grant.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        entry: &'static str,
    ) -> Result<LoadedModule, PluginError> {
        self.load_granted(name, bytes, entry, Grants::NONE)
    }

    /// Compiles and checks a module: valid WebAssembly, imports only from
    /// [`HOST_MODULE`] (the functions of its kind: [`AGENT_HOST_FUNCTIONS`]
    /// when `entry` is [`AGENT_EXPORT`], [`HOST_FUNCTIONS`] otherwise, and
    /// those of `grants`), exports `memory`, `alloc` and `entry`. This is
    /// where an ungranted host function is refused: the linker defines
    /// every one, so a module reaches only what passed this check.
    pub fn load_granted(
        &self,
        name: &str,
        bytes: &[u8],
        entry: &'static str,
        grants: Grants,
    ) -> Result<LoadedModule, PluginError> {
        let module =
            Module::new(&self.engine, bytes).map_err(|error| PluginError::InvalidModule {
                plugin: name.to_owned(),
                detail: format!("{error}"),
            })?;
        let allowed = if entry == AGENT_EXPORT {
            AGENT_HOST_FUNCTIONS
        } else {
            HOST_FUNCTIONS
        };
        for import in module.imports() {
            let host = import.module() == HOST_MODULE;
            let grant = host.then(|| Grant::of_import(import.name())).flatten();
            let known = host
                && (allowed.contains(&import.name())
                    || grant.is_some_and(|grant| grants.contains(grant)));
            if !known {
                return Err(PluginError::ForbiddenImport {
                    plugin: name.to_owned(),
                    module: convergio_schemas::echo(import.module()).into_owned(),
                    name: convergio_schemas::echo(import.name()).into_owned(),
                    grant,
                });
            }
        }
        for export in ["memory", "alloc", entry] {
            if module.get_export(export).is_none() {
                return Err(PluginError::MissingExport {
                    plugin: name.to_owned(),
                    export: match export {
                        "memory" => "memory",
                        "alloc" => "alloc",
                        _ => entry,
                    },
                    detail: "no such export".into(),
                });
            }
        }
        let pre =
            self.linker
                .instantiate_pre(&module)
                .map_err(|error| PluginError::InvalidModule {
                    plugin: name.to_owned(),
                    detail: format!("{error}"),
                })?;
        Ok(LoadedModule {
            name: name.to_owned(),
            pre,
        })
    }

    /// Runs `entry(ptr, len) -> i64` of `module` on `input` (copied into
    /// memory the module's `alloc` gave), returning the bytes at the packed
    /// `(ptr << 32) | len` answer. Every bound of [`SandboxLimits`] holds.
    /// The module may not call agents (`call_agent` answers `REFUSED`).
    pub async fn call(
        &self,
        module: &LoadedModule,
        entry: &'static str,
        input: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        self.call_with(module, entry, input, None).await
    }

    /// [`Self::call`] driven to its end on the current thread, which it
    /// holds until then (up to the deadline): for code already off the
    /// event loop (a blocking thread, a test), never on an event-loop one.
    pub fn call_blocking(
        &self,
        module: &LoadedModule,
        entry: &'static str,
        input: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        futures_executor::block_on(self.call(module, entry, input))
    }

    /// [`Self::call`], the module's `call_agent` making `calls`.
    pub(crate) async fn call_with(
        &self,
        module: &LoadedModule,
        entry: &'static str,
        input: &[u8],
        calls: Option<InvocationCalls>,
    ) -> Result<Vec<u8>, PluginError> {
        let limits = &self.limits;
        let plugin = module.name.as_str();
        let mut store = Store::new(
            &self.engine,
            CallState {
                limiter: Limiter {
                    memory_bytes: limits.memory_bytes,
                    table_elements: limits.table_elements,
                    refused: false,
                },
                calls,
                run_until: after(Duration::from_millis(limits.deadline_ms)),
                started: Instant::now(),
                env: Arc::clone(&self.env),
            },
        );
        store.limiter(|state| &mut state.limiter);
        store
            .set_fuel(limits.fuel)
            .map_err(|error| PluginError::Unavailable {
                detail: format!("setting fuel failed: {error}"),
            })?;
        // At every tick: past its own running time the call is interrupted
        // (`Trap::Interrupt`), otherwise it lets the executor run others.
        // Tokio's `yield_now` (as wasmtime advises) defers the wake-up until
        // the runtime has polled its I/O driver and timers; a plain wake-up
        // would run the plugin again before them. Outside a runtime it
        // wakes at once.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            Ok(if Instant::now() >= context.data().run_until {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        let instance = module
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| self.classify(plugin, &store, error))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| missing(plugin, "memory", "not a memory"))?;
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "alloc")
            .map_err(|error| missing(plugin, "alloc", &error.to_string()))?;
        let run = instance
            .get_typed_func::<(i32, i32), i64>(&mut store, entry)
            .map_err(|error| missing(plugin, entry, &error.to_string()))?;
        let length = i32::try_from(input.len()).map_err(|_| PluginError::BadOutput {
            plugin: plugin.to_owned(),
            detail: "input over 2 GiB".into(),
        })?;
        let pointer = alloc
            .call_async(&mut store, length)
            .await
            .map_err(|error| self.classify(plugin, &store, error))?;
        memory
            .write(&mut store, pointer as u32 as usize, input)
            .map_err(|_| PluginError::BadOutput {
                plugin: plugin.to_owned(),
                detail: format!("alloc({length}) returned {pointer}, outside its memory"),
            })?;
        let packed = run
            .call_async(&mut store, (pointer, length))
            .await
            .map_err(|error| self.classify(plugin, &store, error))?;
        let packed = packed as u64;
        let (out_pointer, out_length) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if out_length > limits.max_output_bytes {
            return Err(PluginError::BadOutput {
                plugin: plugin.to_owned(),
                detail: format!(
                    "answer of {out_length} bytes is over the limit of {}",
                    limits.max_output_bytes
                ),
            });
        }
        memory
            .data(&store)
            .get(out_pointer..out_pointer.saturating_add(out_length))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| PluginError::BadOutput {
                plugin: plugin.to_owned(),
                detail: format!("answer at {out_pointer}+{out_length} is outside its memory"),
            })
    }

    /// Turns a failed call into the bound it hit.
    fn classify(
        &self,
        plugin: &str,
        store: &Store<CallState>,
        error: wasmtime::Error,
    ) -> PluginError {
        if store.data().limiter.refused {
            return PluginError::MemoryLimit {
                plugin: plugin.to_owned(),
                limit_bytes: self.limits.memory_bytes,
            };
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => PluginError::OutOfFuel {
                plugin: plugin.to_owned(),
                fuel: self.limits.fuel,
            },
            Some(Trap::Interrupt) => PluginError::DeadlineExceeded {
                plugin: plugin.to_owned(),
                deadline_ms: self.limits.deadline_ms,
            },
            Some(Trap::StackOverflow) => PluginError::StackOverflow {
                plugin: plugin.to_owned(),
            },
            Some(trap) => PluginError::Trap {
                plugin: plugin.to_owned(),
                detail: trap.to_string(),
            },
            None => {
                let detail = format!("{error:#}");
                // The pool is full: every instance slot is in use.
                if detail.contains("maximum concurrent") || detail.contains("limit of") {
                    PluginError::Unavailable { detail }
                } else {
                    PluginError::Trap {
                        plugin: plugin.to_owned(),
                        detail,
                    }
                }
            }
        }
    }
}

/// `duration` from now (a deadline too far to represent is a day away:
/// the epoch deadline, not this, is what interrupts).
fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// `call_agent(ptr, len)`: reads the request from the module's memory and
/// makes the call, answering what the module reads. Bad pointers and
/// lengths are `BAD_REQUEST` answers. The time spent waiting is given back
/// to the module's own deadline: it had `run_left` when the call started
/// and has it again when the call returns.
async fn call_agent(caller: &mut Caller<'_, CallState>, ptr: i32, len: i32) -> Value {
    let Some(max_request_bytes) = caller
        .data()
        .calls
        .as_ref()
        .map(InvocationCalls::max_request_bytes)
    else {
        return calls::error("REFUSED", "calling agents is not available here");
    };
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return calls::error("BAD_REQUEST", "the module exports no memory");
    };
    let (Ok(start), Ok(length)) = (u32::try_from(ptr), u32::try_from(len)) else {
        return calls::error(
            "BAD_REQUEST",
            &format!("the request at {ptr}+{len} has a negative pointer or length"),
        );
    };
    let (start, length) = (start as usize, length as usize);
    if length > max_request_bytes {
        return calls::error(
            "BAD_REQUEST",
            &format!("the request of {length} bytes is over the limit of {max_request_bytes}"),
        );
    }
    let Some(request) = memory
        .data(&*caller)
        .get(start..start.saturating_add(length))
        .map(<[u8]>::to_vec)
    else {
        return calls::error(
            "BAD_REQUEST",
            &format!("the request at {start}+{length} is outside the module's memory"),
        );
    };
    let run_left = caller
        .data()
        .run_until
        .saturating_duration_since(Instant::now());
    let Some(mut invocation) = caller.data_mut().calls.take() else {
        return calls::error("REFUSED", "calling agents is not available here");
    };
    let answer = invocation.call(&request).await;
    let state = caller.data_mut();
    state.calls = Some(invocation);
    state.run_until = after(run_left);
    answer
}

/// Writes `answer` into memory the module's `alloc` gives, answering the
/// packed `(ptr << 32) | len` ([`write_bytes`]).
async fn write_answer(caller: &mut Caller<'_, CallState>, answer: &Value) -> wasmtime::Result<i64> {
    let bytes = serde_json::to_vec(answer)
        .map_err(|error| wasmtime::Error::msg(format!("call_agent: encoding: {error}")))?;
    write_bytes(caller, CALL_AGENT_IMPORT, &bytes).await
}

/// Writes `bytes` into memory the module's `alloc` gives, answering the
/// packed `(ptr << 32) | len` for the host function `function`. A module
/// whose `alloc` fails or points outside its memory traps (a clear `Trap`
/// naming `function`, never a panic).
async fn write_bytes(
    caller: &mut Caller<'_, CallState>,
    function: &str,
    bytes: &[u8],
) -> wasmtime::Result<i64> {
    let length = i32::try_from(bytes.len())
        .map_err(|_| wasmtime::Error::msg(format!("{function}: the answer is over 2 GiB")))?;
    let alloc = caller
        .get_export("alloc")
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmtime::Error::msg(format!("{function}: the module exports no alloc")))?
        .typed::<i32, i32>(&*caller)?;
    let pointer = alloc.call_async(&mut *caller, length).await?;
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(wasmtime::Error::msg(format!(
            "{function}: the module exports no memory"
        )));
    };
    memory
        .write(&mut *caller, pointer as u32 as usize, bytes)
        .map_err(|_| {
            wasmtime::Error::msg(format!(
                "{function}: alloc({length}) returned {pointer}, outside the module's memory"
            ))
        })?;
    Ok((i64::from(pointer as u32) << 32) | i64::from(length))
}

/// Defines the host functions of the grantable capabilities
/// ([`crate::grants`]). A module reaches one only if its version holds the
/// grant: [`PluginRuntime::load_granted`] refuses the import otherwise.
/// `monotonic_ns()` (grant `clock`): nanoseconds since the call started.
fn monotonic_ns(caller: &Caller<'_, CallState>) -> i64 {
    i64::try_from(caller.data().started.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// `random(ptr, len)` (grant `random`): `len` random bytes written at
/// `ptr`; 0, or a negative code for a bad range or a failed source
/// ([`grants::fill_random`]).
fn random(caller: &mut Caller<'_, CallState>, ptr: i32, len: i32) -> i32 {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return grants::HOST_BAD_RANGE;
    };
    let (Ok(start), Ok(length)) = (u32::try_from(ptr), u32::try_from(len)) else {
        return grants::HOST_BAD_RANGE;
    };
    let (start, length) = (start as usize, length as usize);
    if length > grants::RANDOM_MAX_BYTES {
        return grants::HOST_TOO_LONG;
    }
    match memory
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(length))
    {
        Some(target) => grants::fill_random(target),
        None => grants::HOST_BAD_RANGE,
    }
}

/// `env(name_ptr, name_len)` (grant `env`): the value of the name in
/// `plugins.env`, written into memory the module's `alloc` gives, answered
/// as `(ptr << 32) | len`; a negative code for a bad range or a missing
/// name.
///
/// The values come from the gateway's config, never from the process
/// environment: the process environment holds the gateway's own secrets
/// (`CONVERGIO_*` keys, database URLs, provider API keys), and a plugin is
/// code an organisation uploaded. What a plugin may read is exactly what
/// an operator wrote under `plugins.env`.
async fn env(caller: &mut Caller<'_, CallState>, ptr: i32, len: i32) -> wasmtime::Result<i64> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(grants::HOST_BAD_RANGE.into());
    };
    let (Ok(start), Ok(length)) = (u32::try_from(ptr), u32::try_from(len)) else {
        return Ok(grants::HOST_BAD_RANGE.into());
    };
    let (start, length) = (start as usize, length as usize);
    if length > grants::ENV_NAME_MAX_BYTES {
        return Ok(grants::HOST_TOO_LONG.into());
    }
    let Some(name) = memory
        .data(&*caller)
        .get(start..start.saturating_add(length))
        .map(<[u8]>::to_vec)
    else {
        return Ok(grants::HOST_BAD_RANGE.into());
    };
    let value = std::str::from_utf8(&name)
        .ok()
        .and_then(|name| caller.data().env.get(name).cloned());
    match value {
        Some(value) => write_bytes(caller, ENV_IMPORT, value.as_bytes()).await,
        None => Ok(grants::HOST_NOT_SET.into()),
    }
}

fn define_granted(linker: &mut Linker<CallState>) -> Result<(), PluginError> {
    let failed = |error: wasmtime::Error| PluginError::Unavailable {
        detail: format!("defining the host functions failed: {error}"),
    };
    linker
        .func_wrap(HOST_MODULE, CLOCK_MS_IMPORT, grants::clock_ms)
        .map_err(failed)?;
    linker
        .func_wrap(
            HOST_MODULE,
            MONOTONIC_NS_IMPORT,
            |caller: Caller<'_, CallState>| monotonic_ns(&caller),
        )
        .map_err(failed)?;
    linker
        .func_wrap(
            HOST_MODULE,
            RANDOM_IMPORT,
            |mut caller: Caller<'_, CallState>, ptr: i32, len: i32| random(&mut caller, ptr, len),
        )
        .map_err(failed)?;
    // `env` writes its answer through the module's `alloc`, so it runs
    // asynchronously on the call's fiber, as `call_agent` does.
    linker
        .func_wrap_async(
            HOST_MODULE,
            ENV_IMPORT,
            |mut caller: Caller<'_, CallState>, (ptr, len): (i32, i32)| {
                Box::new(async move { env(&mut caller, ptr, len).await })
            },
        )
        .map_err(failed)?;
    Ok(())
}

fn missing(plugin: &str, export: &'static str, detail: &str) -> PluginError {
    PluginError::MissingExport {
        plugin: plugin.to_owned(),
        export,
        detail: detail.to_owned(),
    }
}
