// A thin N-API layer over the system libbpf: every function maps to one libbpf call or
// syscall wrapper and turns a negative return into a JS Error carrying the errno name.
// Object lifetimes, codecs and the friendly API live in TypeScript (src/bpf/).
#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <map>
#include <string>
#include <vector>
#include <unistd.h>

namespace {

// libbpf reports the verifier log and load problems through its print callback; keep the
// tail so a failed load can say why.
std::string g_log;

int CapturePrint(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  int n = vsnprintf(buf, sizeof buf, fmt, args);
  g_log.append(buf, n > 0 ? std::min<size_t>(n, sizeof buf - 1) : 0);
  if (g_log.size() > 64 * 1024) g_log.erase(0, g_log.size() - 64 * 1024);
  return 0;
}

Napi::Value Throw(Napi::Env env, const char *op, int err, const std::string &detail = "") {
  if (err < 0) err = -err;
  const char *name = strerrorname_np(err);
  std::string msg = std::string(op) + ": " + strerror(err) + " (" + (name ? name : "E?") + ")";
  if (!detail.empty()) msg += "\n" + detail;
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("op", Napi::String::New(env, op));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

// Opened objects, keyed by a small integer handle the JS side holds.
std::map<uint32_t, bpf_object *> g_objects;
uint32_t g_next_handle = 1;

bpf_object *ObjectArg(const Napi::CallbackInfo &info, size_t i) {
  auto it = g_objects.find(info[i].As<Napi::Number>().Uint32Value());
  return it == g_objects.end() ? nullptr : it->second;
}

int IntArg(const Napi::CallbackInfo &info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

// A JS Buffer argument, or nullptr for null/undefined.
void *BufArg(const Napi::CallbackInfo &info, size_t i, size_t *len = nullptr) {
  if (info.Length() <= i || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  auto b = info[i].As<Napi::Buffer<uint8_t>>();
  if (len) *len = b.Length();
  return b.Data();
}

#define CHECK_OBJ(obj) \
  if (!(obj)) return Throw(env, "bpf_object", EBADF, "unknown or closed object handle")

// open(path) -> handle
Napi::Value ObjOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  g_log.clear();
  bpf_object *obj = bpf_object__open_file(path.c_str(), nullptr);
  int err = libbpf_get_error(obj);
  if (err) return Throw(env, "bpf_object__open_file", errno ? errno : err, g_log);
  uint32_t h = g_next_handle++;
  g_objects[h] = obj;
  return Napi::Number::New(env, h);
}

bpf_map *FindMap(bpf_object *obj, const std::string &name) {
  return bpf_object__find_map_by_name(obj, name.c_str());
}

// setMaxEntries(handle, mapName, n)
Napi::Value ObjSetMaxEntries(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_object *obj = ObjectArg(info, 0);
  CHECK_OBJ(obj);
  std::string name = info[1].As<Napi::String>();
  bpf_map *m = FindMap(obj, name);
  if (!m) return Throw(env, "bpf_map__set_max_entries", ENOENT, "no map named \"" + name + "\"");
  int err = bpf_map__set_max_entries(m, info[2].As<Napi::Number>().Uint32Value());
  if (err) return Throw(env, "bpf_map__set_max_entries", err);
  return env.Undefined();
}

// setGlobal(handle, varName, buffer): write a `const volatile` global in .rodata (or a .data/.bss
// global) before load. The variable is located through the object's BTF datasec.
Napi::Value ObjSetGlobal(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_object *obj = ObjectArg(info, 0);
  CHECK_OBJ(obj);
  std::string var = info[1].As<Napi::String>();
  size_t vlen = 0;
  void *val = BufArg(info, 2, &vlen);
  const btf *b = bpf_object__btf(obj);
  if (!b) return Throw(env, "set_global", ENOENT, "object has no BTF");
  bpf_map *m;
  bpf_object__for_each_map(m, obj) {
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
        return Throw(env, "set_global", EINVAL, var + " is " + std::to_string(vs->size) + " bytes, got " + std::to_string(vlen));
      size_t size = 0;
      const void *cur = bpf_map__initial_value(m, &size);
      if (!cur) return Throw(env, "set_global", EINVAL, "no initial value for " + std::string(mname));
      std::vector<uint8_t> data((const uint8_t *)cur, (const uint8_t *)cur + size);
      memcpy(data.data() + vs->offset, val, vlen);
      int err = bpf_map__set_initial_value(m, data.data(), size);
      if (err) return Throw(env, "bpf_map__set_initial_value", err);
      return env.Undefined();
    }
  }
  return Throw(env, "set_global", ENOENT, "no global variable named \"" + var + "\"");
}

// reuseMap(handle, mapName, fd): before load, make the object use an existing map (e.g. a pinned
// one) instead of creating it, so a new program version shares the old one's state.
Napi::Value ObjReuseMap(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_object *obj = ObjectArg(info, 0);
  CHECK_OBJ(obj);
  std::string name = info[1].As<Napi::String>();
  bpf_map *m = FindMap(obj, name);
  if (!m) return Throw(env, "bpf_map__reuse_fd", ENOENT, "no map named \"" + name + "\"");
  int err = bpf_map__reuse_fd(m, IntArg(info, 2));
  if (err) return Throw(env, "bpf_map__reuse_fd", err);
  return env.Undefined();
}

Napi::Value ObjLoad(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_object *obj = ObjectArg(info, 0);
  CHECK_OBJ(obj);
  g_log.clear();
  int err = bpf_object__load(obj);
  if (err) return Throw(env, "bpf_object__load", errno ? errno : err, g_log);
  return env.Undefined();
}

Napi::Value ObjClose(const Napi::CallbackInfo &info) {
  auto it = g_objects.find(info[0].As<Napi::Number>().Uint32Value());
  if (it != g_objects.end()) {
    bpf_object__close(it->second);
    g_objects.erase(it);
  }
  return info.Env().Undefined();
}

// maps(handle) -> [{ name, fd, type, keySize, valueSize, maxEntries }]; fd is -1 before load.
Napi::Value ObjMaps(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_object *obj = ObjectArg(info, 0);
  CHECK_OBJ(obj);
  Napi::Array out = Napi::Array::New(env);
  bpf_map *m;
  uint32_t i = 0;
  bpf_object__for_each_map(m, obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(m));
    o.Set("fd", bpf_map__fd(m));
    o.Set("type", (uint32_t)bpf_map__type(m));
    o.Set("keySize", bpf_map__key_size(m));
    o.Set("valueSize", bpf_map__value_size(m));
    o.Set("maxEntries", bpf_map__max_entries(m));
    o.Set("internal", bpf_map__is_internal(m));
    out.Set(i++, o);
  }
  return out;
}

// programs(handle) -> [{ name, fd, type }]
Napi::Value ObjPrograms(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_object *obj = ObjectArg(info, 0);
  CHECK_OBJ(obj);
  Napi::Array out = Napi::Array::New(env);
  bpf_program *p;
  uint32_t i = 0;
  bpf_object__for_each_program(p, obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(p));
    o.Set("fd", bpf_program__fd(p));
    o.Set("type", (uint32_t)bpf_program__type(p));
    out.Set(i++, o);
  }
  return out;
}

// mapLookup(fd, key, valueLen, flags) -> Buffer | null
Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto value = Napi::Buffer<uint8_t>::New(env, info[2].As<Napi::Number>().Uint32Value());
  int err = bpf_map_lookup_elem_flags(IntArg(info, 0), BufArg(info, 1), value.Data(), info[3].As<Napi::Number>().Int64Value());
  if (err) {
    if (errno == ENOENT) return env.Null();
    return Throw(env, "bpf_map_lookup_elem", errno);
  }
  return value;
}

// mapUpdate(fd, key, value, flags)
Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int err = bpf_map_update_elem(IntArg(info, 0), BufArg(info, 1), BufArg(info, 2), info[3].As<Napi::Number>().Int64Value());
  if (err) return Throw(env, "bpf_map_update_elem", errno);
  return env.Undefined();
}

// mapDelete(fd, key) -> boolean (false when absent)
Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int err = bpf_map_delete_elem(IntArg(info, 0), BufArg(info, 1));
  if (err) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    return Throw(env, "bpf_map_delete_elem", errno);
  }
  return Napi::Boolean::New(env, true);
}

// mapNextKey(fd, key | null, keyLen) -> Buffer | null (null at the end)
Napi::Value MapNextKey(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto next = Napi::Buffer<uint8_t>::New(env, info[2].As<Napi::Number>().Uint32Value());
  int err = bpf_map_get_next_key(IntArg(info, 0), BufArg(info, 1), next.Data());
  if (err) {
    if (errno == ENOENT) return env.Null();
    return Throw(env, "bpf_map_get_next_key", errno);
  }
  return next;
}

// mapLookupBatch(fd, inBatch | null, outBatch, keys, values, count) -> { count, done }
// The caller sizes keys/values for `count` entries and inBatch/outBatch for the map's batch
// token (the key size for hash maps, 4 bytes for arrays).
Napi::Value MapLookupBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  __u32 count = info[5].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int err = bpf_map_lookup_batch(IntArg(info, 0), BufArg(info, 1), BufArg(info, 2), BufArg(info, 3), BufArg(info, 4), &count, &opts);
  bool done = false;
  if (err) {
    if (errno != ENOENT) return Throw(env, "bpf_map_lookup_batch", errno);
    done = true;  // ENOENT: the last entries were returned (possibly none)
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", count);
  r.Set("done", done);
  return r;
}

// mapUpdateBatch(fd, keys, values, count, elemFlags) -> count written
Napi::Value MapUpdateBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  __u32 count = info[3].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = (__u64)info[4].As<Napi::Number>().Int64Value());
  int err = bpf_map_update_batch(IntArg(info, 0), BufArg(info, 1), BufArg(info, 2), &count, &opts);
  if (err) return Throw(env, "bpf_map_update_batch", errno, "after " + std::to_string(count) + " entries");
  return Napi::Number::New(env, count);
}

// mapDeleteBatch(fd, keys, count) -> count deleted
Napi::Value MapDeleteBatch(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  __u32 count = info[2].As<Napi::Number>().Uint32Value();
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  int err = bpf_map_delete_batch(IntArg(info, 0), BufArg(info, 1), &count, &opts);
  if (err) return Throw(env, "bpf_map_delete_batch", errno, "after " + std::to_string(count) + " entries");
  return Napi::Number::New(env, count);
}

// mapInfo(fd) -> { id, name, type, keySize, valueSize, maxEntries, flags }
Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_map_info mi{};
  __u32 len = sizeof mi;
  if (bpf_obj_get_info_by_fd(IntArg(info, 0), &mi, &len)) return Throw(env, "bpf_obj_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
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
  Napi::Env env = info.Env();
  bpf_prog_info pi{};
  __u32 len = sizeof pi;
  if (bpf_obj_get_info_by_fd(IntArg(info, 0), &pi, &len)) return Throw(env, "bpf_obj_get_info_by_fd", errno);
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", pi.id);
  o.Set("name", pi.name);
  o.Set("type", pi.type);
  o.Set("tag", tag);
  return o;
}

// linkInfo(fd) -> { id, progId, type, ifindex? }
Napi::Value LinkInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  bpf_link_info li{};
  __u32 len = sizeof li;
  if (bpf_obj_get_info_by_fd(IntArg(info, 0), &li, &len)) return Throw(env, "bpf_obj_get_info_by_fd", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", li.id);
  o.Set("progId", li.prog_id);
  o.Set("type", li.type);
  if (li.type == BPF_LINK_TYPE_XDP) o.Set("ifindex", li.xdp.ifindex);
  return o;
}

Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[1].As<Napi::String>();
  if (bpf_obj_pin(IntArg(info, 0), path.c_str())) return Throw(env, "bpf_obj_pin", errno, path);
  return env.Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return Throw(env, "bpf_obj_get", errno, path);
  return Napi::Number::New(env, fd);
}

// xdpAttach(progFd, ifindex, flags) -> link fd. flags: XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE.
Napi::Value XdpAttach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = info[2].As<Napi::Number>().Uint32Value());
  int fd = bpf_link_create(IntArg(info, 0), IntArg(info, 1), BPF_XDP, &opts);
  if (fd < 0) return Throw(env, "bpf_link_create(BPF_XDP)", errno);
  return Napi::Number::New(env, fd);
}

// linkUpdate(linkFd, newProgFd, oldProgFd | 0): atomic program replacement.
Napi::Value LinkUpdate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int old = IntArg(info, 2);
  LIBBPF_OPTS(bpf_link_update_opts, opts, .flags = old > 0 ? BPF_F_REPLACE : 0u, .old_prog_fd = (__u32)(old > 0 ? old : 0));
  if (bpf_link_update(IntArg(info, 0), IntArg(info, 1), &opts)) return Throw(env, "bpf_link_update", errno);
  return env.Undefined();
}

Napi::Value LinkDetach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (bpf_link_detach(IntArg(info, 0))) return Throw(env, "bpf_link_detach", errno);
  return env.Undefined();
}

// testRun(progFd, dataIn, dataOutLen, repeat) -> { retval, data, duration }
Napi::Value TestRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  size_t inLen = 0;
  void *in = BufArg(info, 1, &inLen);
  std::vector<uint8_t> out(info[2].As<Napi::Number>().Uint32Value());
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_out = out.data(), .data_size_in = (__u32)inLen,
              .data_size_out = (__u32)out.size(), .repeat = (int)info[3].As<Napi::Number>().Uint32Value());
  if (bpf_prog_test_run_opts(IntArg(info, 0), &opts)) return Throw(env, "bpf_prog_test_run_opts", errno);
  Napi::Object r = Napi::Object::New(env);
  r.Set("retval", opts.retval);
  r.Set("data", Napi::Buffer<uint8_t>::Copy(env, out.data(), std::min<size_t>(opts.data_size_out, out.size())));
  r.Set("duration", opts.duration);
  return r;
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  close(IntArg(info, 0));
  return info.Env().Undefined();
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo &info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) return Throw(info.Env(), "libbpf_num_possible_cpus", n);
  return Napi::Number::New(info.Env(), n);
}

// ifIndex(name) -> index, in the calling thread's network namespace.
Napi::Value IfIndex(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  unsigned idx = if_nametoindex(name.c_str());
  if (!idx) return Throw(env, "if_nametoindex", errno, "interface \"" + name + "\"");
  return Napi::Number::New(env, idx);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CapturePrint);
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  exports.Set("objOpen", Napi::Function::New(env, ObjOpen));
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
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("testRun", Napi::Function::New(env, TestRun));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("ifIndex", Napi::Function::New(env, IfIndex));
  return exports;
}

}  // namespace

NODE_API_MODULE(sluice_bpf, Init)
