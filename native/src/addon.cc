// A thin N-API layer over the system libbpf: every function maps to one libbpf call or
// syscall wrapper and turns a negative return into a JS Error carrying the errno name.
// Object lifetimes, codecs and the friendly API live in TypeScript (src/bpf/).
#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <map>
#include <string>
#include <vector>
#include <unistd.h>

namespace {

// libbpf reports load problems (and, when it owns the log buffer, the verifier log) through its
// print callback; keep the tail so a failed load can say why. The verifier's verdict is at the
// end of its log, so the tail is the part worth keeping.
constexpr size_t kLogTail = 64 * 1024;
std::string g_log;

int CapturePrint(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list measure;
  va_copy(measure, args);
  int n = vsnprintf(nullptr, 0, fmt, measure);
  va_end(measure);
  if (n <= 0) return 0;
  size_t at = g_log.size();
  g_log.resize(at + n + 1);
  vsnprintf(&g_log[at], n + 1, fmt, args);
  g_log.resize(at + n);
  if (g_log.size() > kLogTail) g_log.erase(0, g_log.size() - kLogTail);
  return 0;
}

// The kernel's own errnos that the BPF syscall lets out (include/linux/errno.h), which libc
// does not name: ENOTSUPP is what an operation a map type lacks returns (batch ops on a devmap).
const char *KernelErrnoName(int err, const char **text) {
  switch (err) {
    case 524: *text = "Operation not supported by this map or program type"; return "ENOTSUPP";
    case 525: *text = "Buffer or request is too small"; return "ETOOSMALL";
    case 527: *text = "Type not supported"; return "EBADTYPE";
    default: return nullptr;
  }
}

Napi::Value Throw(Napi::Env env, const std::string &op, int err, const std::string &detail = "") {
  if (err < 0) err = -err;
  if (err == 0) err = EIO;  // a failure without errno must still be a failure
  const char *text = strerror(err);
  const char *name = strerrorname_np(err);
  if (!name) name = KernelErrnoName(err, &text);
  std::string msg = op + ": " + text + " (" + (name ? name : "E?") + ")";
  if (!detail.empty()) msg += "\n" + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("op", Napi::String::New(env, op));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

const char *TypeName(const Napi::Value &v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_function: return "function";
    case napi_bigint: return "bigint";
    case napi_external: return "external";
    default: return v.IsBuffer() ? "Buffer" : v.IsArray() ? "array" : "object";
  }
}

// N-API's As<>() does not check types, and with C++ exceptions off a failed conversion leaves
// a JS exception pending that the next throw turns into a process abort. Handlers read their
// arguments through Args: the first bad one throws a TypeError (RangeError for a value out of
// range) carrying the operation, later reads return zeros, and the handler returns as soon as
// it sees !ok(), before libbpf is called.
class Args {
 public:
  Args(const Napi::CallbackInfo &info, const char *op) : info_(info), env_(info.Env()), op_(op) {}
  bool ok() const { return ok_; }
  Napi::Env env() const { return env_; }
  const std::string &op() const { return op_; }

  Napi::Value Fail(const std::string &msg, bool range = false) {
    if (!ok_) return env_.Undefined();
    ok_ = false;
    if (env_.IsExceptionPending()) return env_.Undefined();  // e.g. a getter threw: keep that one
    Napi::Error e = range ? Napi::Error(Napi::RangeError::New(env_, op_ + ": " + msg))
                          : Napi::Error(Napi::TypeError::New(env_, op_ + ": " + msg));
    e.Set("code", Napi::String::New(env_, "EINVAL"));
    e.Set("errno", Napi::Number::New(env_, EINVAL));
    e.Set("op", Napi::String::New(env_, op_));
    e.ThrowAsJavaScriptException();
    return env_.Undefined();
  }

  std::string Str(size_t i, const char *what) { return StrValue(info_[i], Name(i, what)); }

  int64_t Int(size_t i, const char *what, int64_t lo, int64_t hi) { return IntValue(info_[i], Name(i, what), lo, hi); }
  int Fd(size_t i, const char *what = "fd") { return (int)Int(i, what, 0, INT_MAX); }
  uint32_t U32(size_t i, const char *what) { return (uint32_t)Int(i, what, 0, UINT32_MAX); }

  // Any ArrayBufferView (Buffer, Uint8Array, DataView); with `nullable`, null gives nullptr and
  // length 0 (undefined stays an error: a forgotten argument is not a deliberate "none").
  uint8_t *Buf(size_t i, const char *what, size_t *len, bool nullable = false) {
    *len = 0;
    if (!ok_) return nullptr;
    Napi::Value v = info_[i];
    if (nullable && v.IsNull()) return nullptr;
    if (!v.IsBuffer()) {
      Fail(Name(i, what) + " must be a Buffer" + (nullable ? " or null" : "") + ", got " + TypeName(v));
      return nullptr;
    }
    auto b = v.As<Napi::Buffer<uint8_t>>();
    *len = b.Length();
    return b.Data();
  }

  // An options object (absent: empty); fields are read with OptStr/OptInt.
  Napi::Object Opts(size_t i, const char *what) {
    Napi::Value v = info_[i];
    if (!ok_ || v.IsUndefined() || v.IsNull()) return Napi::Object();
    if (!v.IsObject() || v.IsArray() || v.IsFunction()) {
      Fail(Name(i, what) + " must be an object, got " + TypeName(v));
      return Napi::Object();
    }
    return v.As<Napi::Object>();
  }
  // *set says whether the field was given at all (undefined and null mean "leave libbpf's default").
  std::string OptStr(Napi::Object o, const char *key, bool *set) {
    Napi::Value v = Field(o, key);
    *set = ok_ && !v.IsUndefined() && !v.IsNull();
    return *set ? StrValue(v, std::string("option ") + key) : "";
  }
  int64_t OptInt(Napi::Object o, const char *key, int64_t lo, int64_t hi, int64_t dflt) {
    Napi::Value v = Field(o, key);
    if (!ok_ || v.IsUndefined() || v.IsNull()) return dflt;
    return IntValue(v, std::string("option ") + key, lo, hi);
  }

 private:
  std::string Name(size_t i, const char *what) { return "argument " + std::to_string(i + 1) + " (" + what + ")"; }

  Napi::Value Field(Napi::Object o, const char *key) {
    if (!ok_ || o.IsEmpty()) return env_.Undefined();
    Napi::Value v = o.Get(key);
    if (env_.IsExceptionPending()) {  // a throwing getter: its exception is the answer
      ok_ = false;
      return env_.Undefined();
    }
    return v;
  }

  std::string StrValue(Napi::Value v, const std::string &name) {
    if (!ok_) return "";
    if (!v.IsString()) return Fail(name + " must be a string, got " + TypeName(v)), "";
    std::string s = v.As<Napi::String>();
    // A C path stops at the first NUL: refuse rather than act on a different path.
    if (s.find('\0') != std::string::npos) return Fail(name + " must not contain NUL"), "";
    return s;
  }

  int64_t IntValue(Napi::Value v, const std::string &name, int64_t lo, int64_t hi) {
    if (!ok_) return 0;
    if (!v.IsNumber()) return Fail(name + " must be an integer, got " + TypeName(v)), 0;
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::trunc(d) != d || d < (double)lo || d > (double)hi) {
      char buf[64];
      snprintf(buf, sizeof buf, "%.17g", d);
      return Fail(name + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + buf, true), 0;
    }
    return (int64_t)d;
  }

  const Napi::CallbackInfo &info_;
  Napi::Env env_;
  std::string op_;
  bool ok_ = true;
};

// What an fd refers to ("bpf-map", "bpf-prog", "bpf_link", or a path), so that an info call on
// the wrong kind of fd is refused instead of decoding one kind's info as another's.
std::string FdKind(int fd) {
  char path[64], target[256];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return "";
  target[n] = 0;
  const char *anon = "anon_inode:";
  return strncmp(target, anon, strlen(anon)) == 0 ? target + strlen(anon) : target;
}

bool CheckKind(Args &a, int fd, const char *kind, const char *noun) {
  std::string k = FdKind(fd);
  // Unknown: let the kernel decide (EBADF etc.). Links are "bpf_link" or "bpf-link" by kernel version.
  if (k.empty() || k == kind || (strcmp(kind, "bpf_link") == 0 && k == "bpf-link")) return true;
  Throw(a.env(), a.op(), EINVAL, "fd " + std::to_string(fd) + " is " + k + ", not a " + noun);
  return false;
}

// An opened object and the verifier log buffer libbpf writes into (it must outlive the object).
struct Object {
  bpf_object *obj;
  std::vector<char> log;
};
std::map<uint32_t, Object> g_objects;
uint32_t g_next_handle = 1;

Object *ObjectArg(Args &a, size_t i) {
  uint32_t h = a.U32(i, "object handle");
  if (!a.ok()) return nullptr;
  auto it = g_objects.find(h);
  if (it == g_objects.end()) {
    Throw(a.env(), a.op(), EBADF, "unknown or closed object handle " + std::to_string(h));
    return nullptr;
  }
  return &it->second;
}

// The tail of the custom log buffer, for the load error (libbpf prints only logs it owns).
std::string LogTail(const Object &o) {
  if (o.log.empty()) return "";
  size_t n = strnlen(o.log.data(), o.log.size());
  if (n == 0) return "";
  size_t from = n > kLogTail ? n - kLogTail : 0;
  return "-- kernel log --\n" + std::string(o.log.data() + from, n - from);
}

// objOpen(path, opts?) -> handle. opts: { objectName, pinRootPath, kconfig, btfCustomPath,
// kernelLogLevel, kernelLogSize }. A log level makes the verifier log go to a buffer of our own
// (default 16 MiB: a full buffer fails the load with ENOSPC), returned by objLog and in load errors.
Napi::Value ObjOpen(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_object__open_file");
  std::string path = a.Str(0, "path");
  Napi::Object o = a.Opts(1, "options");
  bool hasName, hasPin, hasKconfig, hasBtf;
  std::string name = a.OptStr(o, "objectName", &hasName);
  std::string pin = a.OptStr(o, "pinRootPath", &hasPin);
  std::string kconfig = a.OptStr(o, "kconfig", &hasKconfig);
  std::string btf = a.OptStr(o, "btfCustomPath", &hasBtf);
  uint32_t level = (uint32_t)a.OptInt(o, "kernelLogLevel", 0, UINT32_MAX, 0);
  size_t logSize = (size_t)a.OptInt(o, "kernelLogSize", 1, UINT32_MAX >> 2, 16 << 20);
  if (!a.ok()) return a.env().Undefined();
  Object ob{nullptr, {}};
  if (level) ob.log.assign(logSize, 0);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = hasName ? name.c_str() : nullptr,
              .pin_root_path = hasPin ? pin.c_str() : nullptr);
  opts.kconfig = hasKconfig ? kconfig.c_str() : nullptr;
  opts.btf_custom_path = hasBtf ? btf.c_str() : nullptr;
  opts.kernel_log_buf = level ? ob.log.data() : nullptr;
  opts.kernel_log_size = level ? ob.log.size() : 0;
  opts.kernel_log_level = level;
  g_log.clear();
  ob.obj = bpf_object__open_file(path.c_str(), &opts);
  int err = errno;
  if (!ob.obj) return Throw(a.env(), a.op(), err, path + (g_log.empty() ? "" : "\n" + g_log));
  uint32_t h = g_next_handle++;
  g_objects.emplace(h, std::move(ob));  // moving a vector keeps its buffer where libbpf points
  return Napi::Number::New(a.env(), h);
}

bpf_map *FindMap(Args &a, Object *o, const std::string &name) {
  bpf_map *m = bpf_object__find_map_by_name(o->obj, name.c_str());
  if (!m) Throw(a.env(), a.op(), ENOENT, "no map named \"" + name + "\"");
  return m;
}

// objName(handle) -> the object's name (the file's base name unless opts.objectName).
Napi::Value ObjName(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_object__name");
  Object *o = ObjectArg(a, 0);
  if (!o) return a.env().Undefined();
  return Napi::String::New(a.env(), bpf_object__name(o->obj));
}

// objLog(handle) -> the kernel log buffer's contents ("" without kernelLogLevel). libbpf passes
// one buffer to each load step, so after load it holds the last step's log.
Napi::Value ObjLog(const Napi::CallbackInfo &info) {
  Args a(info, "kernel_log_buf");
  Object *o = ObjectArg(a, 0);
  if (!o) return a.env().Undefined();
  return Napi::String::New(a.env(), o->log.empty() ? "" : std::string(o->log.data(), strnlen(o->log.data(), o->log.size())));
}

// setMaxEntries(handle, mapName, n)
Napi::Value ObjSetMaxEntries(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map__set_max_entries");
  Object *o = ObjectArg(a, 0);
  std::string name = a.Str(1, "map name");
  uint32_t n = a.U32(2, "max entries");
  if (!o || !a.ok()) return a.env().Undefined();
  bpf_map *m = FindMap(a, o, name);
  if (!m) return a.env().Undefined();
  int err = bpf_map__set_max_entries(m, n);
  if (err) return Throw(a.env(), a.op(), err, "map \"" + name + "\"");
  return a.env().Undefined();
}

// setGlobal(handle, varName, buffer): write a `const volatile` global in .rodata (or a .data/.bss
// global) before load. The variable is located through the object's BTF datasec.
Napi::Value ObjSetGlobal(const Napi::CallbackInfo &info) {
  Args a(info, "set_global");
  Napi::Env env = a.env();
  Object *o = ObjectArg(a, 0);
  std::string var = a.Str(1, "variable name");
  size_t vlen = 0;
  uint8_t *val = a.Buf(2, "value", &vlen);
  if (!o || !a.ok()) return env.Undefined();
  const btf *b = bpf_object__btf(o->obj);
  if (!b) return Throw(env, a.op(), ENOENT, "object has no BTF");
  bpf_map *m;
  bpf_object__for_each_map(m, o->obj) {
    if (!bpf_map__is_internal(m)) continue;
    const char *mname = bpf_map__name(m);
    const char *dot = strchr(mname, '.');
    if (!dot) continue;
    int sec = btf__find_by_name_kind(b, dot, BTF_KIND_DATASEC);
    if (sec < 0) continue;
    const btf_type *t = btf__type_by_id(b, sec);
    const btf_var_secinfo *vs = btf_var_secinfos(t);
    for (int i = 0; i < btf_vlen(t); i++, vs++) {
      const btf_type *vt = btf__type_by_id(b, vs->type);
      if (var != btf__name_by_offset(b, vt->name_off)) continue;
      if (vs->size != vlen)
        return Throw(env, a.op(), EINVAL, var + " is " + std::to_string(vs->size) + " bytes, got " + std::to_string(vlen));
      size_t size = 0;
      const void *cur = bpf_map__initial_value(m, &size);
      if (!cur) return Throw(env, a.op(), EINVAL, "no initial value for " + std::string(mname));
      std::vector<uint8_t> data((const uint8_t *)cur, (const uint8_t *)cur + size);
      memcpy(data.data() + vs->offset, val, vlen);
      int err = bpf_map__set_initial_value(m, data.data(), size);
      if (err) return Throw(env, "bpf_map__set_initial_value", err, var);
      return env.Undefined();
    }
  }
  return Throw(env, a.op(), ENOENT, "no global variable named \"" + var + "\"");
}

// reuseMap(handle, mapName, fd): before load, make the object use an existing map (e.g. a pinned
// one) instead of creating it, so a new program version shares the old one's state.
Napi::Value ObjReuseMap(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map__reuse_fd");
  Object *o = ObjectArg(a, 0);
  std::string name = a.Str(1, "map name");
  int fd = a.Fd(2);
  if (!o || !a.ok()) return a.env().Undefined();
  bpf_map *m = FindMap(a, o, name);
  if (!m) return a.env().Undefined();
  int err = bpf_map__reuse_fd(m, fd);
  if (err) return Throw(a.env(), a.op(), err, "map \"" + name + "\"");
  return a.env().Undefined();
}

Napi::Value ObjLoad(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_object__load");
  Object *o = ObjectArg(a, 0);
  if (!o) return a.env().Undefined();
  g_log.clear();
  int err = bpf_object__load(o->obj);
  if (err) {
    std::string detail = g_log, own = LogTail(*o);
    if (!own.empty()) detail += (detail.empty() || detail.back() == '\n' ? "" : "\n") + own;
    return Throw(a.env(), a.op(), err, detail);
  }
  return a.env().Undefined();
}

Napi::Value ObjClose(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_object__close");
  uint32_t h = a.U32(0, "object handle");
  if (!a.ok()) return a.env().Undefined();
  auto it = g_objects.find(h);
  if (it != g_objects.end()) {  // closing twice is fine: TS close() is idempotent too
    bpf_object__close(it->second.obj);
    g_objects.erase(it);
  }
  return a.env().Undefined();
}

// maps(handle) -> [{ name, fd, type, keySize, valueSize, maxEntries }]; fd is -1 before load.
Napi::Value ObjMaps(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_object__for_each_map");
  Object *o = ObjectArg(a, 0);
  if (!o) return a.env().Undefined();
  Napi::Env env = a.env();
  Napi::Array out = Napi::Array::New(env);
  bpf_map *m;
  uint32_t i = 0;
  bpf_object__for_each_map(m, o->obj) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("name", bpf_map__name(m));
    r.Set("fd", bpf_map__fd(m));
    r.Set("type", (uint32_t)bpf_map__type(m));
    r.Set("keySize", bpf_map__key_size(m));
    r.Set("valueSize", bpf_map__value_size(m));
    r.Set("maxEntries", bpf_map__max_entries(m));
    r.Set("internal", bpf_map__is_internal(m));
    out.Set(i++, r);
  }
  return out;
}

// programs(handle) -> [{ name, fd, type }]
Napi::Value ObjPrograms(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_object__for_each_program");
  Object *o = ObjectArg(a, 0);
  if (!o) return a.env().Undefined();
  Napi::Env env = a.env();
  Napi::Array out = Napi::Array::New(env);
  bpf_program *p;
  uint32_t i = 0;
  bpf_object__for_each_program(p, o->obj) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("name", bpf_program__name(p));
    r.Set("fd", bpf_program__fd(p));
    r.Set("type", (uint32_t)bpf_program__type(p));
    out.Set(i++, r);
  }
  return out;
}

bool IsPerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
         type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

// The sizes the kernel will read from and write to our buffers. Map calls take raw pointers, so
// a Buffer shorter than these would let the kernel read past it or overwrite the heap: each map
// call asks the kernel (one extra syscall) and refuses buffers of the wrong size.
struct Shape {
  uint32_t key;
  size_t value;  // one whole value: per-CPU maps hold an 8-byte-aligned slot per possible CPU
  size_t token;  // a batch position: the key for arrays, a u32 bucket for hashes
};

bool MapShape(Args &a, int fd, Shape *s) {
  bpf_map_info mi{};
  __u32 len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len)) {
    int err = errno;
    std::string kind = FdKind(fd);
    Throw(a.env(), a.op(), err, "fd " + std::to_string(fd) + (kind.empty() ? "" : " is " + kind + ", not a BPF map"));
    return false;
  }
  s->key = mi.key_size;
  s->value = mi.value_size;
  s->token = std::max<size_t>(mi.key_size, 4);
  if (IsPerCpu(mi.type)) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus < 0) {
      Throw(a.env(), "libbpf_num_possible_cpus", cpus);
      return false;
    }
    s->value = ((s->value + 7) / 8) * 8 * cpus;
  }
  return true;
}

// A size mismatch, or a fd that is not a map at all (its info then describes something else).
bool CheckSize(Args &a, int fd, const char *what, uint64_t got, uint64_t want, bool atLeast = false) {
  if (atLeast ? got >= want : got == want) return true;
  if (!CheckKind(a, fd, "bpf-map", "BPF map")) return false;
  a.Fail(std::string(what) + " is " + std::to_string(got) + " bytes, the map needs " + (atLeast ? "at least " : "") +
             std::to_string(want),
         true);
  return false;
}

// mapLookup(fd, key, valueLen, flags) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_lookup_elem");
  Napi::Env env = a.env();
  int fd = a.Fd(0);
  size_t klen;
  uint8_t *key = a.Buf(1, "key", &klen, true);
  uint32_t vlen = a.U32(2, "value length");
  uint64_t flags = a.Int(3, "flags", 0, UINT32_MAX);
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || !CheckSize(a, fd, "key", klen, s.key) || !CheckSize(a, fd, "value length", vlen, s.value))
    return env.Undefined();
  auto value = Napi::Buffer<uint8_t>::New(env, vlen);
  if (bpf_map_lookup_elem_flags(fd, key, value.Data(), flags)) {
    if (errno == ENOENT) return env.Null();
    return Throw(env, a.op(), errno);
  }
  return value;
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_update_elem");
  int fd = a.Fd(0);
  size_t klen, vlen;
  uint8_t *key = a.Buf(1, "key", &klen, true);
  uint8_t *value = a.Buf(2, "value", &vlen);
  uint64_t flags = a.Int(3, "flags", 0, UINT32_MAX);
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || !CheckSize(a, fd, "key", klen, s.key) || !CheckSize(a, fd, "value", vlen, s.value))
    return a.env().Undefined();
  if (bpf_map_update_elem(fd, key, value, flags)) return Throw(a.env(), a.op(), errno);
  return a.env().Undefined();
}

// mapDelete(fd, key) -> boolean (false when absent)
Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_delete_elem");
  Napi::Env env = a.env();
  int fd = a.Fd(0);
  size_t klen;
  uint8_t *key = a.Buf(1, "key", &klen, true);
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || !CheckSize(a, fd, "key", klen, s.key)) return env.Undefined();
  if (bpf_map_delete_elem(fd, key)) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    return Throw(env, a.op(), errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keyLen) -> Buffer | null (null at the end)
Napi::Value MapNextKey(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_get_next_key");
  Napi::Env env = a.env();
  int fd = a.Fd(0);
  size_t klen;
  uint8_t *key = a.Buf(1, "key", &klen, true);
  uint32_t outLen = a.U32(2, "key length");
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || (key && !CheckSize(a, fd, "key", klen, s.key)) || !CheckSize(a, fd, "key length", outLen, s.key))
    return env.Undefined();
  auto next = Napi::Buffer<uint8_t>::New(env, outLen);
  if (bpf_map_get_next_key(fd, key, next.Data())) {
    if (errno == ENOENT) return env.Null();
    return Throw(env, a.op(), errno);
  }
  return next;
}

// mapLookupBatch(fd, inBatch | null, outBatch, keys, values, count) -> { count, done }
// The caller sizes keys/values for `count` entries and inBatch/outBatch for the map's batch
// token (the key for arrays, 4 bytes for hashes: max(key size, 4) fits both).
Napi::Value MapLookupBatch(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_lookup_batch");
  Napi::Env env = a.env();
  int fd = a.Fd(0);
  size_t inLen, outLen, klen, vlen;
  uint8_t *in = a.Buf(1, "inBatch", &inLen, true);
  uint8_t *out = a.Buf(2, "outBatch", &outLen);
  uint8_t *keys = a.Buf(3, "keys", &klen);
  uint8_t *values = a.Buf(4, "values", &vlen);
  __u32 count = a.U32(5, "count");
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || (in && !CheckSize(a, fd, "inBatch", inLen, s.token, true)) ||
      !CheckSize(a, fd, "outBatch", outLen, s.token, true) || !CheckSize(a, fd, "keys", klen, (uint64_t)count * s.key, true) ||
      !CheckSize(a, fd, "values", vlen, (uint64_t)count * s.value, true))
    return env.Undefined();
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  bool done = false;
  if (bpf_map_lookup_batch(fd, in, out, keys, values, &count, &opts)) {
    if (errno != ENOENT) return Throw(env, a.op(), errno);
    done = true;  // ENOENT: the last entries were returned (possibly none)
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", count);
  r.Set("done", done);
  return r;
}

// mapUpdateBatch(fd, keys, values, count, elemFlags) -> count written
Napi::Value MapUpdateBatch(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_update_batch");
  int fd = a.Fd(0);
  size_t klen, vlen;
  uint8_t *keys = a.Buf(1, "keys", &klen);
  uint8_t *values = a.Buf(2, "values", &vlen);
  __u32 count = a.U32(3, "count");
  uint64_t flags = a.Int(4, "flags", 0, UINT32_MAX);
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || !CheckSize(a, fd, "keys", klen, (uint64_t)count * s.key, true) ||
      !CheckSize(a, fd, "values", vlen, (uint64_t)count * s.value, true))
    return a.env().Undefined();
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
  if (bpf_map_update_batch(fd, keys, values, &count, &opts))
    return Throw(a.env(), a.op(), errno, "after " + std::to_string(count) + " entries");
  return Napi::Number::New(a.env(), count);
}

// mapDeleteBatch(fd, keys, count) -> count deleted
Napi::Value MapDeleteBatch(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_map_delete_batch");
  int fd = a.Fd(0);
  size_t klen;
  uint8_t *keys = a.Buf(1, "keys", &klen);
  __u32 count = a.U32(2, "count");
  Shape s;
  if (!a.ok() || !MapShape(a, fd, &s) || !CheckSize(a, fd, "keys", klen, (uint64_t)count * s.key, true))
    return a.env().Undefined();
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  if (bpf_map_delete_batch(fd, keys, &count, &opts))
    return Throw(a.env(), a.op(), errno, "after " + std::to_string(count) + " entries");
  return Napi::Number::New(a.env(), count);
}

// mapInfo(fd) -> { id, name, type, keySize, valueSize, maxEntries, flags }
Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_obj_get_info_by_fd");
  int fd = a.Fd(0);
  if (!a.ok() || !CheckKind(a, fd, "bpf-map", "BPF map")) return a.env().Undefined();
  bpf_map_info mi{};
  __u32 len = sizeof mi;
  if (bpf_obj_get_info_by_fd(fd, &mi, &len)) return Throw(a.env(), a.op(), errno, "map fd " + std::to_string(fd));
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("id", mi.id);
  o.Set("name", mi.name);
  o.Set("type", mi.type);
  o.Set("keySize", mi.key_size);
  o.Set("valueSize", mi.value_size);
  o.Set("maxEntries", mi.max_entries);
  o.Set("flags", mi.map_flags);
  return o;
}

// progInfo(fd) -> { id, name, type, tag }
Napi::Value ProgInfo(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_obj_get_info_by_fd");
  int fd = a.Fd(0);
  if (!a.ok() || !CheckKind(a, fd, "bpf-prog", "BPF program")) return a.env().Undefined();
  bpf_prog_info pi{};
  __u32 len = sizeof pi;
  if (bpf_obj_get_info_by_fd(fd, &pi, &len)) return Throw(a.env(), a.op(), errno, "program fd " + std::to_string(fd));
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  o.Set("tag", tag);
  return o;
}

// linkInfo(fd) -> { id, progId, type, ifindex? }
Napi::Value LinkInfo(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_obj_get_info_by_fd");
  int fd = a.Fd(0);
  if (!a.ok() || !CheckKind(a, fd, "bpf_link", "BPF link")) return a.env().Undefined();
  bpf_link_info li{};
  __u32 len = sizeof li;
  if (bpf_obj_get_info_by_fd(fd, &li, &len)) return Throw(a.env(), a.op(), errno, "link fd " + std::to_string(fd));
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("id", li.id);
  o.Set("progId", li.prog_id);
  o.Set("type", li.type);
  if (li.type == BPF_LINK_TYPE_XDP) o.Set("ifindex", li.xdp.ifindex);
  return o;
}

Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_obj_pin");
  int fd = a.Fd(0);
  std::string path = a.Str(1, "path");
  if (!a.ok()) return a.env().Undefined();
  if (bpf_obj_pin(fd, path.c_str())) return Throw(a.env(), a.op(), errno, path);
  return a.env().Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_obj_get");
  std::string path = a.Str(0, "path");
  if (!a.ok()) return a.env().Undefined();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return Throw(a.env(), a.op(), errno, path);
  return Napi::Number::New(a.env(), fd);
}

// xdpAttach(progFd, ifindex, flags) -> link fd. flags: XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE.
Napi::Value XdpAttach(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_link_create(BPF_XDP)");
  int prog = a.Fd(0, "program fd");
  int ifindex = (int)a.Int(1, "ifindex", 1, INT_MAX);
  uint32_t flags = a.U32(2, "flags");
  if (!a.ok()) return a.env().Undefined();
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = flags);
  int fd = bpf_link_create(prog, ifindex, BPF_XDP, &opts);
  if (fd < 0) return Throw(a.env(), a.op(), errno, "ifindex " + std::to_string(ifindex));
  return Napi::Number::New(a.env(), fd);
}

// xdpQuery(ifindex) -> { attachMode, progId, drvProgId, skbProgId, hwProgId }: what the kernel
// has attached, whoever attached it. attachMode is XDP_ATTACHED_* (0 none, 1 drv, 2 skb, 3 hw,
// 4 multi).
Napi::Value XdpQuery(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_xdp_query");
  int ifindex = (int)a.Int(0, "ifindex", 1, INT_MAX);
  if (!a.ok()) return a.env().Undefined();
  LIBBPF_OPTS(bpf_xdp_query_opts, opts);
  int err = bpf_xdp_query(ifindex, 0, &opts);
  if (err) return Throw(a.env(), a.op(), err, "ifindex " + std::to_string(ifindex));
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("attachMode", opts.attach_mode);
  o.Set("progId", opts.prog_id);
  o.Set("drvProgId", opts.drv_prog_id);
  o.Set("skbProgId", opts.skb_prog_id);
  o.Set("hwProgId", opts.hw_prog_id);
  return o;
}

// linkUpdate(linkFd, newProgFd, oldProgFd | 0): atomic program replacement.
Napi::Value LinkUpdate(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_link_update");
  int link = a.Fd(0, "link fd");
  int prog = a.Fd(1, "program fd");
  int old = a.Fd(2, "expected program fd");
  if (!a.ok()) return a.env().Undefined();
  LIBBPF_OPTS(bpf_link_update_opts, opts, .flags = old > 0 ? BPF_F_REPLACE : 0u, .old_prog_fd = (__u32)old);
  if (bpf_link_update(link, prog, &opts)) return Throw(a.env(), a.op(), errno);
  return a.env().Undefined();
}

Napi::Value LinkDetach(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_link_detach");
  int fd = a.Fd(0, "link fd");
  if (!a.ok()) return a.env().Undefined();
  if (bpf_link_detach(fd)) return Throw(a.env(), a.op(), errno);
  return a.env().Undefined();
}

// testRun(progFd, dataIn, dataOutLen, repeat) -> { retval, data, dataSize, duration }
// The kernel copies at most dataOutLen bytes back and fails with ENOSPC when the output is
// longer; a dataOutLen of 0 would mean "no limit" to it, so it gets no output buffer instead.
Napi::Value TestRun(const Napi::CallbackInfo &info) {
  Args a(info, "bpf_prog_test_run_opts");
  int fd = a.Fd(0, "program fd");
  size_t inLen = 0;
  uint8_t *in = a.Buf(1, "data", &inLen);
  uint32_t outLen = a.U32(2, "output length");
  uint32_t repeat = (uint32_t)a.Int(3, "repeat", 0, INT_MAX);
  if (!a.ok()) return a.env().Undefined();
  std::vector<uint8_t> out(outLen);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_out = outLen ? out.data() : nullptr,
              .data_size_in = (__u32)inLen, .data_size_out = outLen, .repeat = (int)repeat);
  if (bpf_prog_test_run_opts(fd, &opts)) {
    int err = errno;
    if (err == ENOSPC)
      return Throw(a.env(), a.op(), err, "the program's output is " + std::to_string(opts.data_size_out) +
                                             " bytes, more than the " + std::to_string(outLen) + " asked for");
    return Throw(a.env(), a.op(), err);
  }
  Napi::Object r = Napi::Object::New(a.env());
  r.Set("retval", opts.retval);
  r.Set("data", Napi::Buffer<uint8_t>::Copy(a.env(), out.data(), std::min<size_t>(opts.data_size_out, out.size())));
  r.Set("duration", opts.duration);
  return r;
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  Args a(info, "close");
  int fd = a.Fd(0);
  if (!a.ok()) return a.env().Undefined();
  close(fd);
  return a.env().Undefined();
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo &info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) return Throw(info.Env(), "libbpf_num_possible_cpus", n);
  return Napi::Number::New(info.Env(), n);
}

// libbpfVersion() -> "1.1": the library the addon runs with, for the BPF build cache key where
// the headers are absent (a VM given prebuilt objects).
Napi::Value LibbpfVersion(const Napi::CallbackInfo &info) {
  return Napi::String::New(info.Env(), std::to_string(libbpf_major_version()) + "." + std::to_string(libbpf_minor_version()));
}

// ifIndex(name) -> index, in the calling thread's network namespace.
Napi::Value IfIndex(const Napi::CallbackInfo &info) {
  Args a(info, "if_nametoindex");
  std::string name = a.Str(0, "interface name");
  if (!a.ok()) return a.env().Undefined();
  unsigned idx = if_nametoindex(name.c_str());
  if (!idx) return Throw(a.env(), a.op(), errno, "interface \"" + name + "\"");
  return Napi::Number::New(a.env(), idx);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CapturePrint);
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  exports.Set("objOpen", Napi::Function::New(env, ObjOpen));
  exports.Set("objName", Napi::Function::New(env, ObjName));
  exports.Set("objLog", Napi::Function::New(env, ObjLog));
  exports.Set("objSetMaxEntries", Napi::Function::New(env, ObjSetMaxEntries));
  exports.Set("objSetGlobal", Napi::Function::New(env, ObjSetGlobal));
  exports.Set("objLoad", Napi::Function::New(env, ObjLoad));
  exports.Set("objReuseMap", Napi::Function::New(env, ObjReuseMap));
  exports.Set("objClose", Napi::Function::New(env, ObjClose));
  exports.Set("objMaps", Napi::Function::New(env, ObjMaps));
  exports.Set("objPrograms", Napi::Function::New(env, ObjPrograms));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapNextKey", Napi::Function::New(env, MapNextKey));
  exports.Set("mapLookupBatch", Napi::Function::New(env, MapLookupBatch));
  exports.Set("mapUpdateBatch", Napi::Function::New(env, MapUpdateBatch));
  exports.Set("mapDeleteBatch", Napi::Function::New(env, MapDeleteBatch));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("xdpAttach", Napi::Function::New(env, XdpAttach));
  exports.Set("xdpQuery", Napi::Function::New(env, XdpQuery));
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("testRun", Napi::Function::New(env, TestRun));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("libbpfVersion", Napi::Function::New(env, LibbpfVersion));
  exports.Set("ifIndex", Napi::Function::New(env, IfIndex));
  return exports;
}

}  // namespace

NODE_API_MODULE(sluice_bpf, Init)
