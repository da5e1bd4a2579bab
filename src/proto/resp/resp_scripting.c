/* Scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, and functions (FUNCTION,
 * FCALL, FCALL_RO), with Lua 5.1 as in Redis 7.0 (docs/redis-compatibility.md,
 * "Scripting" and "Functions").
 *
 * One Lua state per server for scripts and one for function libraries (struct
 * resp_scripting), both guarded by its mutex; a function runs exactly as a script does
 * (the end of this file). A script runs
 * as EXEC runs a transaction: its worker first becomes the only one running any
 * connection's commands (resp_exclusive_begin()), so no other client's command runs
 * between two of the script's; the worker's io_ring is set aside, so a value on flash is
 * read before its command goes on; session->transaction.running is set, so a blocking
 * command answers its timeout at once (they are all noscript anyway, as in Redis).
 *
 * redis.call() runs its command on the calling session with the session's output queue
 * swapped for a private one, and speaking RESP2 whatever HELLO chose; the reply's bytes
 * are copied out of that queue and parsed back into Lua values (parse_reply()). The
 * script's return value is converted into the client's protocol once the session is
 * restored (reply_lua()).
 *
 * Scripts are cached by the SHA1 of their body (EVAL caches what it runs, SCRIPT LOAD
 * only compiles) in a table in the Lua registry, until SCRIPT FLUSH, which starts a new
 * Lua state. A script that runs for more than busy-reply-threshold ms without having run a
 * write command is stopped with an error (what SCRIPT KILL would be allowed to do); one
 * that has written runs to its end, and every connection waits meanwhile (Redis answers
 * BUSY to them; strata does not read their commands until the script ends). */
#include "base/clock.h"
#include "base/glob.h"
#include "base/io_ring.h"
#include "base/log.h"
#include "base/numbers.h"
#include "proto/resp/resp_internal.h"
#include "proto/resp/resp_lua_msgpack.h"

#include <ctype.h>
#include <lauxlib.h>
#include <lua-bitop.h>
#include <lua-cjson.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* How often (in Lua instructions) the time limit is checked. */
#define SCRIPT_HOOK_INSTRUCTIONS 100000

/* The most memory the Lua states may hold at once (scripts' tables and strings, the
 * cache of compiled scripts): beyond it an allocation fails and the script stops with
 * Lua's "not enough memory". Redis sets no bound; strata keeps a script from taking the
 * memory its store budget assumes is free. */
#define SCRIPT_MEMORY_LIMIT (256u * 1024 * 1024)

/* Nesting beyond this in a reply, either way, is refused (Redis: "reached lua stack
 * limit"). */
#define SCRIPT_MAX_DEPTH 200

struct resp_scripting {
    pthread_mutex_t lock; /* guards all below; held while a script runs and by SCRIPT */
    size_t memory;        /* bytes the Lua states hold (lua_allocate()) */
    lua_State *lua;       /* NULL only when a SCRIPT FLUSH could not make a new one */
    lua_State *functions; /* FUNCTION's libraries: a state of their own, as in Redis, so
                             that SCRIPT FLUSH keeps them */
    /* While a script runs (lock held): */
    struct resp_session *session;
    bool read_only; /* EVAL_RO: write commands are refused */
    bool wrote;     /* a write command ran: the time limit no longer stops it */
    int64_t started_ms;
    int64_t limit_ms;           /* busy-reply-threshold when it started (0 or less: none) */
    struct byte_buffer reply;   /* the reply of the command redis.call() ran */
    const unsigned char **argv; /* redis.call()'s arguments (pointing into the Lua stack) */
    uint64_t *lengths;
    size_t argv_capacity;
};

/* Registry keys. */
static const char scripting_key[] = "strata_scripting"; /* light userdata: the struct */
static const char scripts_key[] = "strata_scripts";     /* sha1 hex -> compiled function */
static const char handler_key[] = "strata_error_handler";
static const char manager_key[] = "strata_functions"; /* the functions' state: functions_code's
                                                         manager */

/* Lua code run when the state is made (with the debug library still there): the error
 * handler, which makes every error a table {err=..., source=..., line=...} pointing at
 * the user script's line, and the protection of the global table (as Redis 7.0: reading
 * an undefined global and writing any global are errors). */
static const char setup_code[] =
    "local dbg = debug\n"
    "local function handler(err)\n"
    "  local level, found = 2, nil\n"
    "  while true do\n"
    "    local info = dbg.getinfo(level, 'Sl')\n"
    "    if info == nil then break end\n"
    "    if info.source == '@user_script' or info.source == '@user_function' then\n"
    "      found = info break\n"
    "    end\n"
    "    level = level + 1\n"
    "  end\n"
    "  if type(err) ~= 'table' then err = {err = 'ERR ' .. tostring(err)} end\n"
    "  if found then err['source'] = found.source err['line'] = found.currentline end\n"
    "  return err\n"
    "end\n"
    "local error, rawget, tostring = error, rawget, tostring\n"
    "local mt = {}\n"
    "mt.__newindex = function(t, n, v)\n"
    "  error('Attempt to modify a readonly table', 2)\n"
    "end\n"
    "mt.__index = function(t, n)\n"
    "  error(\"Script attempted to access nonexistent global variable '\" .. tostring(n) .. "
    "\"'\", 2)\n"
    "end\n"
    "local readonly = {__newindex = function(t, n, v)\n"
    "  error('Attempt to modify a readonly table', 2)\n"
    "end}\n"
    "for _, name in ipairs({'redis', 'cjson', 'bit', 'cmsgpack', 'string', 'table', 'math'}) do\n"
    "  setmetatable(_G[name], readonly)\n"
    "end\n"
    "setmetatable(_G, mt)\n"
    "return handler\n";

/* Lua code run once in the functions' state (after setup_code), with the real global
 * table G and the error handler as arguments. It returns the library manager and the
 * table that becomes the state's globals: an empty table whose metatable sends reads to
 * G, or while a library loads to the load API (only redis.register_function, redis.log
 * and the log levels, as Redis 7.0), and refuses writes. The manager keeps the libraries
 * (name -> {name, code, functions = {records in registration order}}), their order, and
 * every function by name (-> {name, callback, description, flags = {names in Redis's
 * order}, no_writes, library}). load() returns an error reply's text, or nil. */
static const char functions_code[] =
    "local G, handler = ...\n"
    "local error, type, pairs, ipairs, select, tostring = error, type, pairs, ipairs, select, "
    "tostring\n"
    "local setmetatable, xpcall, loadstring = setmetatable, xpcall, loadstring\n"
    "local lower, find, remove = string.lower, string.find, table.remove\n"
    "local libraries, order, functions, loading = {}, {}, {}, nil\n"
    "local flag_order = {'no-writes', 'allow-oom', 'allow-stale', 'no-cluster',\n"
    "  'allow-cross-slot-keys'}\n"
    "local known = {}\n"
    "for _, flag in ipairs(flag_order) do known[flag] = true end\n"
    "local function readonly(t, n, v)\n"
    "  error('Attempt to modify a readonly table', 2)\n"
    "end\n"
    "local function missing(t, n)\n"
    "  error(\"Script attempted to access nonexistent global variable '\" .. tostring(n) .. "
    "\"'\", 2)\n"
    "end\n"
    "local function fail(message) error(message, 0) end\n"
    "local function stringish(v) return type(v) == 'string' or type(v) == 'number' end\n"
    "local function register(...)\n"
    "  local count = select('#', ...)\n"
    "  local name, callback, description\n"
    "  local chosen = {}\n"
    "  if count == 1 then\n"
    "    local t = ...\n"
    "    if type(t) ~= 'table' then\n"
    "      fail('calling redis.register_function with a single argument is only applicable "
    "to Lua table (representing named arguments).')\n"
    "    end\n"
    "    for k, v in pairs(t) do\n"
    "      if not stringish(k) then\n"
    "        fail('named argument key given to redis.register_function is not a string')\n"
    "      end\n"
    "      local key = lower(tostring(k))\n"
    "      if key == 'function_name' then\n"
    "        if not stringish(v) then\n"
    "          fail('function_name argument given to redis.register_function must be a "
    "string')\n"
    "        end\n"
    "        name = tostring(v)\n"
    "      elseif key == 'description' then\n"
    "        if not stringish(v) then\n"
    "          fail('description argument given to redis.register_function must be a "
    "string')\n"
    "        end\n"
    "        description = tostring(v)\n"
    "      elseif key == 'callback' then\n"
    "        if type(v) ~= 'function' then\n"
    "          fail('callback argument given to redis.register_function must be a "
    "function')\n"
    "        end\n"
    "        callback = v\n"
    "      elseif key == 'flags' then\n"
    "        if type(v) ~= 'table' then\n"
    "          fail('flags argument to redis.register_function must be a table representing "
    "function flags')\n"
    "        end\n"
    "        for _, flag in pairs(v) do\n"
    "          if not stringish(flag) or not known[lower(tostring(flag))] then\n"
    "            fail('unknown flag given')\n"
    "          end\n"
    "          chosen[lower(tostring(flag))] = true\n"
    "        end\n"
    "      else\n"
    "        fail('unknown argument given to redis.register_function')\n"
    "      end\n"
    "    end\n"
    "    if name == nil then fail('redis.register_function must get a function name argument') "
    "end\n"
    "    if callback == nil then fail('redis.register_function must get a callback argument') "
    "end\n"
    "  elseif count == 2 then\n"
    "    name, callback = ...\n"
    "    if not stringish(name) then\n"
    "      fail('first argument to redis.register_function must be a string')\n"
    "    end\n"
    "    name = tostring(name)\n"
    "    if type(callback) ~= 'function' then\n"
    "      fail('second argument to redis.register_function must be a function')\n"
    "    end\n"
    "  else\n"
    "    fail('wrong number of arguments to redis.register_function')\n"
    "  end\n"
    "  if name == '' or find(name, '[^%w_]') then\n"
    "    fail('Library names can only contain letters, numbers, or underscores(_) and must "
    "be at least one character long')\n"
    "  end\n"
    "  local library = loading\n"
    "  for _, f in ipairs(library.functions) do\n"
    "    if f.name == name then fail('Function already exists in the library') end\n"
    "  end\n"
    "  local record = {name = name, callback = callback, description = description, flags = "
    "{},\n"
    "    no_writes = chosen['no-writes'] == true, library = library}\n"
    "  for _, flag in ipairs(flag_order) do\n"
    "    if chosen[flag] then record.flags[#record.flags + 1] = flag end\n"
    "  end\n"
    "  library.functions[#library.functions + 1] = record\n"
    "end\n"
    "local load_redis = {register_function = register, log = G.redis.log}\n"
    "for _, level in ipairs({'LOG_DEBUG', 'LOG_VERBOSE', 'LOG_NOTICE', 'LOG_WARNING'}) do\n"
    "  load_redis[level] = G.redis[level]\n"
    "end\n"
    "setmetatable(load_redis, {__index = missing, __newindex = readonly})\n"
    "local load_api = setmetatable({redis = load_redis}, {__index = missing, __newindex = "
    "readonly})\n"
    "local globals_meta = {__index = G, __newindex = readonly}\n"
    "local globals = setmetatable({}, globals_meta)\n"
    "local manager = {libraries = libraries, order = order, functions = functions}\n"
    "function manager.load(name, body, code, replace)\n"
    "  local old = libraries[name]\n"
    "  if old and not replace then return \"ERR Library '\" .. name .. \"' already exists\" end\n"
    "  local chunk, message = loadstring(body, '@user_function')\n"
    "  if not chunk then return 'ERR Error compiling function: ' .. tostring(message) end\n"
    "  local library = {name = name, code = code, functions = {}}\n"
    "  loading = library\n"
    "  globals_meta.__index = load_api\n"
    "  local ok, err = xpcall(chunk, handler)\n"
    "  globals_meta.__index = G\n"
    "  loading = nil\n"
    "  if not ok then\n"
    "    if type(err) == 'table' then err = err.err end\n"
    "    return 'ERR Error registering functions: ' .. tostring(err)\n"
    "  end\n"
    "  if #library.functions == 0 then return 'ERR No functions registered' end\n"
    "  for _, f in ipairs(library.functions) do\n"
    "    local other = functions[lower(f.name)]\n"
    "    if other and other.library ~= old then\n"
    "      return 'ERR Function ' .. f.name .. ' already exists'\n"
    "    end\n"
    "  end\n"
    "  if old then\n"
    "    for _, f in ipairs(old.functions) do functions[lower(f.name)] = nil end\n"
    "  else\n"
    "    order[#order + 1] = name\n"
    "  end\n"
    "  libraries[name] = library\n"
    "  for _, f in ipairs(library.functions) do functions[lower(f.name)] = f end\n"
    "  return nil\n"
    "end\n"
    "function manager.reset()\n"
    "  globals_meta.__index = G\n"
    "  loading = nil\n"
    "end\n"
    "function manager.delete(name)\n"
    "  local library = libraries[name]\n"
    "  if not library then return false end\n"
    "  for _, f in ipairs(library.functions) do functions[lower(f.name)] = nil end\n"
    "  libraries[name] = nil\n"
    "  for i, other in ipairs(order) do\n"
    "    if other == name then remove(order, i) break end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "function manager.flush()\n"
    "  for k in pairs(libraries) do libraries[k] = nil end\n"
    "  for k in pairs(functions) do functions[k] = nil end\n"
    "  for i = #order, 1, -1 do order[i] = nil end\n"
    "end\n"
    "return manager, globals\n";

/* Lowercase hex SHA1 of DATA into HEX (41 bytes). */
static void sha1_hex(const void *data, size_t length, char *hex) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (EVP_Digest(data, length, digest, &size, EVP_sha1(), NULL) != 1 || size != 20) {
        memset(digest, 0, sizeof(digest));
    }
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 20; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[40] = '\0';
}

static struct resp_scripting *scripting_of_lua(lua_State *lua) {
    lua_getfield(lua, LUA_REGISTRYINDEX, scripting_key);
    struct resp_scripting *scripting = lua_touserdata(lua, -1);
    lua_pop(lua, 1);
    return scripting;
}

/* ---- running a command from a script ------------------------------------------- */

/* Pushes {FIELD = TEXT} (TEXT of LENGTH bytes). */
static void push_reply_table(lua_State *lua, const char *field, const char *text, size_t length) {
    lua_createtable(lua, 0, 1);
    lua_pushlstring(lua, text, length);
    lua_setfield(lua, -2, field);
}

/* Reads a CRLF-terminated line at *AT (before END): sets *LINE and *LENGTH and moves
 * past it. False when there is none. */
static bool reply_line(const char **at, const char *end, const char **line, size_t *length) {
    const char *cr = memchr(*at, '\r', (size_t)(end - *at));
    if (cr == NULL || cr + 1 >= end || cr[1] != '\n') return false;
    *line = *at;
    *length = (size_t)(cr - *at);
    *at = cr + 2;
    return true;
}

static bool reply_number(const char *line, size_t length, long long *value) {
    char text[32];
    if (length == 0 || length >= sizeof(text)) return false;
    memcpy(text, line, length);
    text[length] = '\0';
    char *end;
    *value = strtoll(text, &end, 10);
    return *end == '\0';
}

/* Parses one RESP2 reply at *AT (before END) and pushes it as Redis converts replies
 * for Lua: integer -> number, bulk -> string, nil -> false, array -> table, status ->
 * {ok=...}, error -> {err=...}. (RESP3 types, which a script's session does not get,
 * are converted as their RESP2 forms would be.) Returns false, nothing pushed, when the
 * bytes are not a whole reply. May raise a Lua error when out of memory. */
static bool parse_reply(lua_State *lua, const char **at, const char *end, int depth) {
    if (*at >= end || depth > SCRIPT_MAX_DEPTH) return false;
    luaL_checkstack(lua, 4, "reached lua stack limit");
    char type = **at;
    (*at)++;
    const char *line;
    size_t length;
    long long number;
    if (!reply_line(at, end, &line, &length)) return false;
    switch (type) {
    case '+':
        push_reply_table(lua, "ok", line, length);
        return true;
    case '-':
        push_reply_table(lua, "err", line, length);
        return true;
    case ':':
        if (!reply_number(line, length, &number)) return false;
        lua_pushnumber(lua, (lua_Number)number);
        return true;
    case '_':
        lua_pushboolean(lua, 0);
        return true;
    case '#':
        lua_pushboolean(lua, length == 1 && line[0] == 't');
        return true;
    case ',':
        lua_pushlstring(lua, line, length);
        return true;
    case '$':
    case '=':
        if (!reply_number(line, length, &number)) return false;
        if (number < 0) {
            lua_pushboolean(lua, 0);
            return true;
        }
        if ((unsigned long long)(end - *at) < (unsigned long long)number + 2) return false;
        if (type == '=' && number >= 4) {
            lua_pushlstring(lua, *at + 4, (size_t)number - 4); /* "txt:" */
        } else {
            lua_pushlstring(lua, *at, (size_t)number);
        }
        *at += number + 2;
        return true;
    case '*':
    case '~':
    case '%':
        if (!reply_number(line, length, &number)) return false;
        if (number < 0) {
            lua_pushboolean(lua, 0);
            return true;
        }
        if (type == '%') number *= 2;
        lua_createtable(lua, number < 1024 ? (int)number : 1024, 0);
        for (long long i = 0; i < number; i++) {
            if (!parse_reply(lua, at, end, depth + 1)) {
                lua_pop(lua, 1);
                return false;
            }
            lua_rawseti(lua, -2, (int)(i + 1));
        }
        return true;
    default:
        return false;
    }
}

/* Runs COMMAND (admitted: known, arity, allowed from a script) on SCRIPTING's session
 * with its output swapped for a private queue, as EXEC runs a queued command (rights
 * checked, counted in commandstats as its own call, hold released), and leaves its
 * reply's bytes in scripting->reply. Returns false when the reply could not be
 * captured whole (out of memory, or a value too large to be read into DRAM). */
static bool run_captured(struct resp_scripting *scripting, const struct resp_command *command,
                         const struct resp_request *request) {
    struct resp_session *session = scripting->session;
    struct output_queue capture;
    output_queue_init(&capture);
    struct output_queue *client = session->output;
    session->output = &capture;
    if (!resp_session_allowed(session, command, request)) {
        resp_stats_rejected(resp_stats_slot(command, request));
    } else {
        if (strstr(command->flags, "write") != NULL) scripting->wrote = true;
        int eval_slot = session->stats_slot;
        uint32_t eval_errors = session->stats_errors;
        bool eval_rejected = session->stats_rejected;
        int64_t eval_ns = session->stats_ns;
        uint32_t errors_before = session->error_replies;
        resp_session_stats_begin(session, command, request);
        resp_session_run(session, command, request);
        if (session->stats_slot >= 0) resp_stats_command_end(session, request);
        session->stats_slot = eval_slot;
        /* The command's error is its own failure, not the script's. */
        session->stats_errors = eval_errors + (session->error_replies - errors_before);
        session->stats_rejected = eval_rejected;
        session->stats_ns = eval_ns;
        /* No ring: nothing waited for flash, so nothing is left to resume. */
        STRATA_ASSERT(!session->suspended && !session->rerun_wanted);
        if (session->holding) {
            if (session->hold_index < request->argc) {
                store_release_hold(session->server->environment.store,
                                   request->argv[session->hold_index],
                                   (size_t)request->lengths[session->hold_index]);
            }
            session->holding = false;
        }
    }
    session->output = client;
    byte_buffer_clear(&scripting->reply);
    for (;;) {
        struct iovec vectors[16];
        int count = output_queue_iovecs(&capture, vectors, 16);
        if (count <= 0) break;
        size_t taken = 0;
        for (int i = 0; i < count; i++) {
            byte_buffer_append(&scripting->reply, vectors[i].iov_base, vectors[i].iov_len);
            taken += vectors[i].iov_len;
        }
        output_queue_consume(&capture, taken);
    }
    bool whole = output_queue_pending(&capture) == 0 && !capture.failed && !scripting->reply.failed;
    output_queue_clear(&capture);
    return whole;
}

/* redis.call() and redis.pcall(): a refusal or a failing command raises {err=...} from
 * call (RAISE), and is returned from pcall. */
static int raise_or_return(lua_State *lua, bool raise, const char *text) {
    push_reply_table(lua, "err", text, strlen(text));
    if (raise) return lua_error(lua);
    return 1;
}

/* True when COMMAND (with REQUEST's subcommand) may not run from a script: its flags, or
 * a subcommand's, say noscript (every CLIENT subcommand but HELP, as in Redis 7.0). */
static bool refused_in_scripts(const struct resp_command *command,
                               const struct resp_request *request) {
    if (strstr(command->flags, "noscript") != NULL) return true;
    if (request->argc < 2) return false;
    if (strcmp(command->name, "client") == 0) return !argument_is(request, 1, "HELP");
    const struct resp_command *subcommand =
        resp_subcommand_find(command, request->argv[1], (size_t)request->lengths[1]);
    return subcommand != NULL && strstr(subcommand->flags, "noscript") != NULL;
}

static int redis_command(lua_State *lua, bool raise) {
    struct resp_scripting *scripting = scripting_of_lua(lua);
    int argc = lua_gettop(lua);
    if (argc == 0)
        return raise_or_return(lua, raise,
                               "ERR Please specify at least one argument for this redis lib call");
    for (int i = 1; i <= argc; i++) {
        int type = lua_type(lua, i);
        if (type != LUA_TSTRING && type != LUA_TNUMBER)
            return raise_or_return(
                lua, raise, "ERR Lua redis lib command arguments must be strings or integers");
    }
    if ((size_t)argc > scripting->argv_capacity) {
        size_t capacity = (size_t)argc < 16 ? 16 : (size_t)argc;
        const unsigned char **argv = realloc(scripting->argv, capacity * sizeof(*argv));
        if (argv != NULL) scripting->argv = argv;
        uint64_t *lengths = realloc(scripting->lengths, capacity * sizeof(*lengths));
        if (lengths != NULL) scripting->lengths = lengths;
        if (argv == NULL || lengths == NULL)
            return raise_or_return(lua, raise, "OOM out of memory: could not run the command");
        scripting->argv_capacity = capacity;
    }
    for (int i = 1; i <= argc; i++) {
        if (lua_type(lua, i) == LUA_TNUMBER) {
            /* As Redis 7.0: "%.17g" (0.1 is 0.10000000000000001), not Lua's "%.14g". */
            char number[40];
            snprintf(number, sizeof(number), "%.17g", (double)lua_tonumber(lua, i));
            lua_pushstring(lua, number);
            lua_replace(lua, i);
        }
        size_t length;
        const char *text = lua_tolstring(lua, i, &length);
        scripting->argv[i - 1] = (const unsigned char *)text;
        scripting->lengths[i - 1] = length;
    }
    struct resp_request request = {(size_t)argc, scripting->argv, scripting->lengths};
    const struct resp_command *command = resp_command_find(request.argv[0], request.lengths[0]);
    if (command == NULL)
        return raise_or_return(lua, raise, "ERR Unknown Redis command called from script");
    if ((command->arity > 0 && request.argc != (size_t)command->arity) ||
        (command->arity < 0 && request.argc < (size_t)-command->arity))
        return raise_or_return(lua, raise,
                               "ERR Wrong number of args calling Redis command from script");
    if (refused_in_scripts(command, &request))
        return raise_or_return(lua, raise, "ERR This Redis command is not allowed from script");
    if (scripting->read_only && strstr(command->flags, "write") != NULL)
        return raise_or_return(lua, raise,
                               "ERR Write commands are not allowed from read-only scripts.");
    if (!run_captured(scripting, command, &request))
        return raise_or_return(lua, raise,
                               "ERR the reply of a command run from a script could not be "
                               "captured (out of memory, or a value larger than DRAM)");
    const char *at = (const char *)scripting->reply.data;
    const char *end = at + scripting->reply.length;
    if (scripting->reply.length == 0 || !parse_reply(lua, &at, end, 0) || at != end)
        return raise_or_return(lua, raise, "ERR reached lua stack limit");
    if (raise && lua_istable(lua, -1)) {
        lua_getfield(lua, -1, "err");
        bool error = lua_isstring(lua, -1);
        lua_pop(lua, 1);
        if (error) return lua_error(lua);
    }
    return 1;
}

static int lua_redis_call(lua_State *lua) {
    return redis_command(lua, true);
}

static int lua_redis_pcall(lua_State *lua) {
    return redis_command(lua, false);
}

/* redis.error_reply(text), redis.status_reply(text). */
static int lua_redis_error_reply(lua_State *lua) {
    size_t length;
    const char *text = luaL_checklstring(lua, 1, &length);
    push_reply_table(lua, "err", text, length);
    return 1;
}

static int lua_redis_status_reply(lua_State *lua) {
    size_t length;
    const char *text = luaL_checklstring(lua, 1, &length);
    push_reply_table(lua, "ok", text, length);
    return 1;
}

static int lua_redis_sha1hex(lua_State *lua) {
    if (lua_gettop(lua) != 1) {
        lua_pushstring(lua, "wrong number of arguments");
        return lua_error(lua);
    }
    size_t length;
    const char *text = luaL_checklstring(lua, 1, &length);
    char hex[41];
    sha1_hex(text, length, hex);
    lua_pushstring(lua, hex);
    return 1;
}

/* redis.log(level, message...): one log line, event=script_log. */
static int lua_redis_log(lua_State *lua) {
    int argc = lua_gettop(lua);
    if (argc < 2) return luaL_error(lua, "redis.log() requires two arguments or more.");
    if (!lua_isnumber(lua, 1))
        return luaL_error(lua, "First argument must be a number (log level).");
    int level = (int)lua_tonumber(lua, 1);
    if (level < 0 || level > 3) return luaL_error(lua, "Invalid debug level.");
    luaL_Buffer buffer;
    luaL_buffinit(lua, &buffer);
    for (int i = 2; i <= argc; i++) {
        if (i > 2) luaL_addchar(&buffer, ' ');
        size_t length;
        const char *text = lua_tolstring(lua, i, &length);
        if (text != NULL) luaL_addlstring(&buffer, text, length);
    }
    luaL_pushresult(&buffer);
    size_t length;
    const char *message = lua_tolstring(lua, -1, &length);
    static const enum log_level levels[] = {LOG_DEBUG, LOG_INFO, LOG_INFO, LOG_WARNING};
    char quoted[512];
    log_event(levels[level], "script_log", "message=%s",
              log_quote(quoted, sizeof(quoted), message, length));
    return 0;
}

/* redis.replicate_commands() (always true since Redis 7.0) and redis.set_repl() (no
 * replication here: nothing to choose). */
static int lua_redis_replicate_commands(lua_State *lua) {
    lua_pushboolean(lua, 1);
    return 1;
}

static int lua_redis_set_repl(lua_State *lua) {
    (void)lua;
    return 0;
}

/* pcall() as Redis 7.0 replaces it: an error raised as a table {err=...} (redis.call's)
 * is returned as its err string, so a script sees the message it expects. */
static int lua_pcall_strings(lua_State *lua) {
    int argc = lua_gettop(lua);
    luaL_checkany(lua, 1);
    lua_pushboolean(lua, 1); /* the status, if it succeeds */
    lua_insert(lua, 1);
    if (lua_pcall(lua, argc - 1, LUA_MULTRET, 0) != 0) {
        if (lua_istable(lua, -1)) {
            lua_getfield(lua, -1, "err");
            if (lua_isstring(lua, -1)) {
                lua_replace(lua, -2);
            } else {
                lua_pop(lua, 1);
            }
        }
        lua_pushboolean(lua, 0);
        lua_replace(lua, 1);
        return 2;
    }
    return lua_gettop(lua);
}

/* loadstring(text [, name]) for source text only: precompiled chunks can crash Lua 5.1
 * (Redis patches its Lua to refuse them; Debian's is not patched). */
static int lua_loadstring_text(lua_State *lua) {
    size_t length;
    const char *text = luaL_checklstring(lua, 1, &length);
    const char *name = luaL_optstring(lua, 2, text);
    if (length > 0 && text[0] == LUA_SIGNATURE[0]) {
        lua_pushnil(lua);
        lua_pushstring(lua, "loadstring: precompiled chunks are not allowed");
        return 2;
    }
    if (luaL_loadbuffer(lua, text, length, name) != 0) {
        lua_pushnil(lua);
        lua_insert(lua, -2);
        return 2;
    }
    return 1;
}

/* How long a script (or a library's body) may run without writing before it is stopped:
 * busy-reply-threshold (lua-time-limit), in ms; 0 or less: no limit. */
static int64_t script_time_limit(struct resp_session *session) {
    return options_number(session->server->environment.options, RESP_OPTION(busy_reply_threshold));
}

/* Stops a script that has run too long without writing. */
static void time_hook(lua_State *lua, lua_Debug *debug) {
    (void)debug;
    struct resp_scripting *scripting = scripting_of_lua(lua);
#ifdef STRATA_FUZZING
    /* The fuzz targets stop every script soon: one that loops writing would hang them. */
    if (clock_monotonic_ms() - scripting->started_ms < 100) return;
#else
    if (scripting->wrote || scripting->limit_ms <= 0 ||
        clock_monotonic_ms() - scripting->started_ms < scripting->limit_ms)
        return;
#endif
    /* The hook stays: a script that catches this error is stopped again and again. */
    luaL_error(lua,
               "Script stopped: it ran for more than %d ms without writing, and every "
               "connection waits while a script runs",
               (int)scripting->limit_ms); /* (Lua's format has no %lld; the option is 32-bit) */
}

/* ---- the Lua state -------------------------------------------------------------- */

static void open_library(lua_State *lua, lua_CFunction open, const char *name) {
    lua_pushcfunction(lua, open);
    lua_pushstring(lua, name);
    lua_call(lua, 1, 0);
}

/* Opens the library OPEN returns as a module and makes it the global NAME (cjson, bit,
 * cmsgpack), as Redis's scripts see them. */
static void open_module(lua_State *lua, lua_CFunction open, const char *name) {
    lua_pushcfunction(lua, open);
    lua_pushstring(lua, name);
    lua_call(lua, 1, 1);
    lua_setfield(lua, LUA_GLOBALSINDEX, name);
}

static void set_global_nil(lua_State *lua, const char *name) {
    lua_pushnil(lua);
    lua_setfield(lua, LUA_GLOBALSINDEX, name);
}

/* Builds the sandbox in LUA (protected: lua_cpcall()). The argument is the struct. */
static int setup_state(lua_State *lua) {
    void *scripting = lua_touserdata(lua, 1);
    open_library(lua, luaopen_base, "");
    open_library(lua, luaopen_table, LUA_TABLIBNAME);
    open_library(lua, luaopen_string, LUA_STRLIBNAME);
    open_library(lua, luaopen_math, LUA_MATHLIBNAME);
    open_library(lua, luaopen_debug, LUA_DBLIBNAME);
    open_module(lua, luaopen_cjson, "cjson");
    open_module(lua, luaopen_bit, "bit");
    open_module(lua, resp_luaopen_cmsgpack, "cmsgpack");
    /* Nothing that reads files or loads code (bytecode can crash Lua 5.1). */
    static const char *const removed[] = {"dofile", "loadfile", "load"};
    for (size_t i = 0; i < sizeof(removed) / sizeof(removed[0]); i++)
        set_global_nil(lua, removed[i]);
    lua_pushcfunction(lua, lua_loadstring_text);
    lua_setfield(lua, LUA_GLOBALSINDEX, "loadstring");
    lua_pushcfunction(lua, lua_pcall_strings);
    lua_setfield(lua, LUA_GLOBALSINDEX, "pcall");
    lua_pushlightuserdata(lua, scripting);
    lua_setfield(lua, LUA_REGISTRYINDEX, scripting_key);
    lua_newtable(lua);
    lua_setfield(lua, LUA_REGISTRYINDEX, scripts_key);
    static const luaL_Reg functions[] = {
        {"call", lua_redis_call},
        {"pcall", lua_redis_pcall},
        {"error_reply", lua_redis_error_reply},
        {"status_reply", lua_redis_status_reply},
        {"sha1hex", lua_redis_sha1hex},
        {"log", lua_redis_log},
        {"replicate_commands", lua_redis_replicate_commands},
        {"set_repl", lua_redis_set_repl},
    };
    lua_newtable(lua);
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        lua_pushcfunction(lua, functions[i].func);
        lua_setfield(lua, -2, functions[i].name);
    }
    static const struct {
        const char *name;
        int value;
    } constants[] = {{"LOG_DEBUG", 0},   {"LOG_VERBOSE", 1},  {"LOG_NOTICE", 2},
                     {"LOG_WARNING", 3}, {"REPL_NONE", 0},    {"REPL_AOF", 1},
                     {"REPL_SLAVE", 2},  {"REPL_REPLICA", 2}, {"REPL_ALL", 3}};
    for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++) {
        lua_pushnumber(lua, constants[i].value);
        lua_setfield(lua, -2, constants[i].name);
    }
    lua_setfield(lua, LUA_GLOBALSINDEX, "redis");
    if (luaL_loadbuffer(lua, setup_code, sizeof(setup_code) - 1, "=strata_setup") != 0)
        return lua_error(lua);
    lua_call(lua, 0, 1);
    lua_setfield(lua, LUA_REGISTRYINDEX, handler_key);
    /* The global table is protected now: rawset. */
    lua_pushstring(lua, "debug");
    lua_pushnil(lua);
    lua_rawset(lua, LUA_GLOBALSINDEX);
    return 0;
}

/* The Lua states' allocator (lua_Alloc): realloc(), bounded by SCRIPT_MEMORY_LIMIT.
 * CONTEXT is the struct; called with its lock held (or while making or closing a state,
 * which also happens under it, or before the server runs). */
static void *lua_allocate(void *context, void *block, size_t old_size, size_t new_size) {
    struct resp_scripting *scripting = context;
    if (new_size == 0) {
        free(block);
        scripting->memory -= old_size;
        return NULL;
    }
    if (new_size > old_size && scripting->memory + (new_size - old_size) > SCRIPT_MEMORY_LIMIT)
        return NULL;
    void *grown = realloc(block, new_size);
    if (grown != NULL) scripting->memory = scripting->memory - old_size + new_size;
    return grown;
}

static int lua_panic(lua_State *lua) {
    log_event(LOG_ERROR, "script_panic", "error=\"%s\"",
              lua_isstring(lua, -1) ? lua_tostring(lua, -1) : "?");
    abort();
}

/* A new sandboxed state for SCRIPTING, or NULL when out of memory. */
static lua_State *new_state(struct resp_scripting *scripting) {
    lua_State *lua = lua_newstate(lua_allocate, scripting);
    if (lua != NULL) lua_atpanic(lua, lua_panic);
    if (lua == NULL) return NULL;
    if (lua_cpcall(lua, setup_state, scripting) != 0) {
        log_event(LOG_ERROR, "script_setup_failed", "error=\"%s\"",
                  lua_isstring(lua, -1) ? lua_tostring(lua, -1) : "?");
        lua_close(lua);
        return NULL;
    }
    return lua;
}

/* Makes LUA (a new sandboxed state) the functions' state (protected: lua_cpcall()):
 * runs functions_code, keeps its manager in the registry and its table as the globals. */
static int setup_functions(lua_State *lua) {
    if (luaL_loadbuffer(lua, functions_code, sizeof(functions_code) - 1, "=strata_functions") != 0)
        return lua_error(lua);
    lua_pushvalue(lua, LUA_GLOBALSINDEX);
    lua_getfield(lua, LUA_REGISTRYINDEX, handler_key);
    lua_call(lua, 2, 2);
    lua_replace(lua, LUA_GLOBALSINDEX);
    lua_setfield(lua, LUA_REGISTRYINDEX, manager_key);
    return 0;
}

/* A new state for FUNCTION's libraries, or NULL when out of memory. */
static lua_State *new_functions_state(struct resp_scripting *scripting) {
    lua_State *lua = new_state(scripting);
    if (lua == NULL) return NULL;
    if (lua_cpcall(lua, setup_functions, NULL) != 0) {
        log_event(LOG_ERROR, "script_setup_failed", "error=\"%s\"",
                  lua_isstring(lua, -1) ? lua_tostring(lua, -1) : "?");
        lua_close(lua);
        return NULL;
    }
    return lua;
}

struct resp_scripting *resp_scripting_create(void) {
    struct resp_scripting *scripting = calloc(1, sizeof(*scripting));
    if (scripting == NULL) return NULL;
    pthread_mutex_init(&scripting->lock, NULL);
    scripting->lua = new_state(scripting);
    if (scripting->lua != NULL) scripting->functions = new_functions_state(scripting);
    if (scripting->lua == NULL || scripting->functions == NULL) {
        if (scripting->lua != NULL) lua_close(scripting->lua);
        pthread_mutex_destroy(&scripting->lock);
        free(scripting);
        return NULL;
    }
    return scripting;
}

void resp_scripting_destroy(struct resp_scripting *scripting) {
    if (scripting == NULL) return;
    if (scripting->lua != NULL) lua_close(scripting->lua);
    if (scripting->functions != NULL) lua_close(scripting->functions);
    byte_buffer_free(&scripting->reply);
    free(scripting->argv);
    free(scripting->lengths);
    pthread_mutex_destroy(&scripting->lock);
    free(scripting);
}

/* ---- compiling and running ------------------------------------------------------- */

/* What one EVAL or SCRIPT LOAD asks of the Lua state, run under lua_cpcall() so that
 * running out of memory inside Lua is an error, not an abort. */
struct script_job {
    struct resp_scripting *scripting;
    struct resp_session *session;
    const struct resp_request *request;
    char sha[41];
    const unsigned char *body; /* NULL: EVALSHA (the script must be cached) */
    size_t body_length;
    bool run;                 /* false: SCRIPT LOAD, compile only */
    size_t keys;              /* numkeys */
    bool unknown;             /* EVALSHA of a script not cached: NOSCRIPT */
    bool replied;             /* the reply is written */
    bool entered;             /* the session was set up for the script (session_enter()) */
    bool restored;            /* and is itself again (session_leave()) */
    struct byte_buffer error; /* an error to reply (no NUL), when not replied */
    /* FCALL: the function (then sha is unused), and the first check that failed on its
     * numkeys (NULL when none), replied once the function is found. */
    const unsigned char *function;
    size_t function_length;
    const char *keys_error;
    bool read_only; /* FCALL_RO */
    /* The session's own state, set aside while the script runs: */
    struct io_ring *ring;
    bool running;   /* the session's transaction.running before it */
    bool in_script; /* and its in_script */
    int protocol;
};

/* Pushes the cached function for JOB's sha, compiling and caching JOB's body when it is
 * not cached. Returns false (nothing pushed) when it is unknown or does not compile
 * (JOB's unknown or error says which). */
static bool push_function(lua_State *lua, struct script_job *job) {
    lua_getfield(lua, LUA_REGISTRYINDEX, scripts_key);
    lua_getfield(lua, -1, job->sha);
    if (lua_isfunction(lua, -1)) {
        lua_remove(lua, -2);
        return true;
    }
    lua_pop(lua, 1);
    if (job->body == NULL) {
        lua_pop(lua, 1);
        job->unknown = true;
        return false;
    }
    if (luaL_loadbuffer(lua, (const char *)job->body, job->body_length, "@user_script") != 0) {
        byte_buffer_append_text(&job->error, "ERR Error compiling script (new function): ");
        size_t length;
        const char *text = lua_tolstring(lua, -1, &length);
        if (text != NULL) byte_buffer_append(&job->error, text, length);
        lua_pop(lua, 2);
        return false;
    }
    lua_pushvalue(lua, -1);
    lua_setfield(lua, -3, job->sha);
    lua_remove(lua, -2);
    return true;
}

/* Sets global NAME to a table of the COUNT arguments of REQUEST from FIRST on. */
static void set_arguments(lua_State *lua, const char *name, const struct resp_request *request,
                          size_t first, size_t count) {
    lua_pushstring(lua, name);
    lua_createtable(lua, count < 1024 ? (int)count : 1024, 0);
    for (size_t i = 0; i < count; i++) {
        lua_pushlstring(lua, (const char *)request->argv[first + i],
                        (size_t)request->lengths[first + i]);
        lua_rawseti(lua, -2, (int)(i + 1));
    }
    lua_rawset(lua, LUA_GLOBALSINDEX);
}

/* Makes JOB's session run a script's commands: no flash waits, no blocking, RESP2. */
static void session_enter(struct script_job *job) {
    struct resp_session *session = job->session;
    job->ring = io_ring_current();
    io_ring_set_current(NULL);
    job->running = session->transaction.running;
    session->transaction.running = true;
    job->in_script = session->in_script;
    session->in_script = true;
    job->protocol = atomic_load_explicit(&session->protocol, memory_order_relaxed);
    atomic_store_explicit(&session->protocol, 2, memory_order_relaxed);
    job->entered = true;
}

/* Undoes session_enter(), once; nothing when it did not run. */
static void session_leave(struct script_job *job) {
    if (!job->entered || job->restored) return;
    struct resp_session *session = job->session;
    atomic_store_explicit(&session->protocol, job->protocol, memory_order_relaxed);
    session->transaction.running = job->running;
    session->in_script = job->in_script;
    io_ring_set_current(job->ring);
    job->restored = true;
}

/* Writes an ok or error string as a one-line reply (CR and LF become spaces). */
static void reply_line_text(struct resp_session *session, const char *text, size_t length,
                            bool error) {
    char stack[256];
    char *line = length < sizeof(stack) ? stack : malloc(length + 1);
    if (line == NULL) {
        reply_error(session, "OOM out of memory: could not reply");
        return;
    }
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        line[i] = c == '\r' || c == '\n' || c == '\0' ? ' ' : c;
    }
    line[length] = '\0';
    if (error) {
        reply_error(session, line);
    } else {
        reply_simple(session, line);
    }
    if (line != stack) free(line);
}

/* Replies with the Lua value on top of LUA's stack, converted as Redis 7.0 does:
 * number -> integer (truncated), string -> bulk, true -> 1, false and nil -> nil,
 * {err=...} -> error, {ok=...} -> status, other tables -> arrays of their elements up to
 * the first nil. Leaves the stack as it was. */
static void reply_lua(struct resp_session *session, lua_State *lua, int depth) {
    size_t length;
    const char *text;
    switch (lua_type(lua, -1)) {
    case LUA_TSTRING:
        text = lua_tolstring(lua, -1, &length);
        reply_bulk(session, text, length);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(lua, -1)) {
            reply_integer(session, 1);
        } else {
            reply_null(session);
        }
        return;
    case LUA_TNUMBER: {
        /* Out of range (and NaN): what Redis's conversion gives on x86-64. */
        double number = lua_tonumber(lua, -1);
        int64_t integer = number >= -9223372036854775808.0 && number < 9223372036854775808.0
                              ? (int64_t)number
                              : INT64_MIN;
        reply_integer(session, integer);
        return;
    }
    case LUA_TTABLE:
        break;
    default:
        reply_null(session);
        return;
    }
    if (depth > SCRIPT_MAX_DEPTH || !lua_checkstack(lua, 4)) {
        reply_error(session, "ERR reached lua stack limit");
        return;
    }
    lua_pushstring(lua, "err");
    lua_rawget(lua, -2);
    if (lua_type(lua, -1) == LUA_TSTRING) {
        text = lua_tolstring(lua, -1, &length);
        reply_line_text(session, text, length, true);
        lua_pop(lua, 1);
        return;
    }
    lua_pop(lua, 1);
    lua_pushstring(lua, "ok");
    lua_rawget(lua, -2);
    if (lua_type(lua, -1) == LUA_TSTRING) {
        text = lua_tolstring(lua, -1, &length);
        reply_line_text(session, text, length, false);
        lua_pop(lua, 1);
        return;
    }
    lua_pop(lua, 1);
    size_t count = 0;
    for (;;) {
        lua_rawgeti(lua, -1, (int)(count + 1));
        bool present = !lua_isnil(lua, -1);
        lua_pop(lua, 1);
        if (!present) break;
        count++;
    }
    reply_array(session, count);
    for (size_t i = 0; i < count; i++) {
        lua_rawgeti(lua, -1, (int)(i + 1));
        reply_lua(session, lua, depth + 1);
        lua_pop(lua, 1);
    }
}

/* Makes the error a script raised (on top of LUA's stack: the handler's table) JOB's
 * error text: "<err> script: <sha>, on @user_script:<line>." as Redis 7.0. */
static void script_error_text(lua_State *lua, struct script_job *job) {
    size_t length;
    const char *text;
    if (!lua_istable(lua, -1)) {
        byte_buffer_append_text(&job->error, "ERR ");
        text = lua_tolstring(lua, -1, &length);
        if (text != NULL) byte_buffer_append(&job->error, text, length);
        return;
    }
    lua_getfield(lua, -1, "err");
    text = lua_tolstring(lua, -1, &length);
    if (text != NULL) {
        byte_buffer_append(&job->error, text, length);
    } else {
        byte_buffer_append_text(&job->error, "ERR unknown error");
    }
    lua_pop(lua, 1);
    lua_getfield(lua, -1, "source");
    lua_getfield(lua, -2, "line");
    if (lua_isstring(lua, -2) && lua_isnumber(lua, -1)) {
        if (job->function != NULL) {
            byte_buffer_append_text(&job->error, " script: ");
            byte_buffer_append(&job->error, job->function, job->function_length);
            byte_buffer_appendf(&job->error, ", on %s:%d.", lua_tostring(lua, -2),
                                (int)lua_tonumber(lua, -1));
        } else {
            byte_buffer_appendf(&job->error, " script: %s, on %s:%d.", job->sha,
                                lua_tostring(lua, -2), (int)lua_tonumber(lua, -1));
        }
    }
    lua_pop(lua, 2);
}

/* Calls the function on top of LUA's stack, below it its ARGUMENTS arguments, as JOB's
 * script (the time limit, the session set up for redis.call()), and replies with what it
 * returns or leaves its error in JOB. Pops them all. */
static void script_call(lua_State *lua, struct script_job *job, int arguments) {
    lua_getfield(lua, LUA_REGISTRYINDEX, handler_key);
    lua_insert(lua, -2 - arguments);
    struct resp_scripting *scripting = job->scripting;
    scripting->session = job->session;
    scripting->wrote = false;
    scripting->started_ms = clock_monotonic_ms();
    scripting->limit_ms = script_time_limit(job->session);
    lua_sethook(lua, time_hook, LUA_MASKCOUNT, SCRIPT_HOOK_INSTRUCTIONS);
    session_enter(job);
    int status = lua_pcall(lua, arguments, 1, -2 - arguments);
    session_leave(job);
    lua_sethook(lua, time_hook, 0, 0);
    scripting->session = NULL;
    if (status != 0) {
        script_error_text(lua, job);
        lua_pop(lua, 2);
        return;
    }
    reply_lua(job->session, lua, 0);
    job->replied = true;
    lua_pop(lua, 2);
}

/* The protected part of EVAL and SCRIPT LOAD (lua_cpcall(): the argument is the job). */
static int script_job_run(lua_State *lua) {
    struct script_job *job = lua_touserdata(lua, 1);
    if (!push_function(lua, job)) return 0;
    if (!job->run) return 0;
    const struct resp_request *request = job->request;
    set_arguments(lua, "KEYS", request, 3, job->keys);
    set_arguments(lua, "ARGV", request, 3 + job->keys, request->argc - 3 - job->keys);
    script_call(lua, job, 0);
    return 0;
}

/* Pushes a table of the COUNT arguments of REQUEST from FIRST on. */
static void push_arguments(lua_State *lua, const struct resp_request *request, size_t first,
                           size_t count) {
    lua_createtable(lua, count < 1024 ? (int)count : 1024, 0);
    for (size_t i = 0; i < count; i++) {
        lua_pushlstring(lua, (const char *)request->argv[first + i],
                        (size_t)request->lengths[first + i]);
        lua_rawseti(lua, -2, (int)(i + 1));
    }
}

/* The protected part of FCALL (lua_cpcall() on the functions' state: the argument is the
 * job): finds the function (job->unknown when there is none), then refuses what Redis
 * refuses in its order (numkeys, FCALL_RO of a function without no-writes), then calls
 * it with (keys, args); a no-writes function runs as a read-only script. */
static int fcall_job_run(lua_State *lua) {
    struct script_job *job = lua_touserdata(lua, 1);
    lua_getfield(lua, LUA_REGISTRYINDEX, manager_key);
    lua_getfield(lua, -1, "functions"); /* by lowercase name: FCALL's is case-insensitive */
    lua_getfield(lua, LUA_GLOBALSINDEX, "string");
    lua_getfield(lua, -1, "lower");
    lua_remove(lua, -2);
    lua_pushlstring(lua, (const char *)job->function, job->function_length);
    lua_call(lua, 1, 1);
    lua_rawget(lua, -2);
    if (!lua_istable(lua, -1)) {
        job->unknown = true;
        return 0;
    }
    if (job->keys_error != NULL) {
        byte_buffer_append_text(&job->error, job->keys_error);
        return 0;
    }
    lua_getfield(lua, -1, "no_writes");
    bool no_writes = lua_toboolean(lua, -1);
    lua_pop(lua, 1);
    if (job->read_only && !no_writes) {
        byte_buffer_append_text(&job->error,
                                "ERR Can not execute a script with write flag using *_ro command.");
        return 0;
    }
    job->scripting->read_only = job->read_only || no_writes;
    lua_getfield(lua, -1, "callback");
    const struct resp_request *request = job->request;
    push_arguments(lua, request, 3, job->keys);
    push_arguments(lua, request, 3 + job->keys, request->argc - 3 - job->keys);
    script_call(lua, job, 2);
    return 0;
}

/* Runs JOB with RUN (script_job_run(), fcall_job_run()) on SCRIPTING's state for it (its
 * lock held). */
static void script_job_start(struct resp_scripting *scripting, struct script_job *job,
                             lua_CFunction run) {
    lua_State *lua = job->function != NULL ? scripting->functions : scripting->lua;
    /* EVAL's state is remade when a SCRIPT FLUSH could not; the functions' always is. */
    if (lua == NULL && job->function == NULL) scripting->lua = lua = new_state(scripting);
    if (lua == NULL) {
        byte_buffer_append_text(&job->error, "OOM out of memory: no Lua state");
        return;
    }
    if (lua_cpcall(lua, run, job) != 0) {
        session_leave(job);
        scripting->session = NULL;
        lua_sethook(lua, time_hook, 0, 0);
        if (job->replied) {
            /* Out of memory halfway through a reply: it cannot be finished. */
            job->session->closing = true;
        } else {
            byte_buffer_clear(&job->error);
            byte_buffer_append_text(&job->error, "OOM out of memory in the script engine");
        }
    }
    lua_settop(lua, 0);
    /* What KEYS and ARGV held need not wait for the next script. */
    lua_gc(lua, LUA_GCSTEP, 0);
}

/* Replies with JOB's error (NOSCRIPT, a compile error, the script's error). */
static void reply_job_error(struct resp_session *session, struct script_job *job) {
    if (job->unknown) {
        reply_error(session, "NOSCRIPT No matching script. Please use EVAL.");
        return;
    }
    byte_buffer_append(&job->error, "", 1);
    if (job->error.failed) {
        reply_error(session, "OOM out of memory: could not reply");
        return;
    }
    reply_line_text(session, (const char *)job->error.data, job->error.length - 1, true);
}

/* EVAL script numkeys key... arg..., and its SHA and read-only forms. */
static void eval_command(struct resp_session *session, const struct resp_request *request,
                         bool by_sha, bool read_only) {
    int64_t keys;
    if (!argument_int64(session, request, 2, &keys)) return;
    if (keys > (int64_t)request->argc - 3) {
        reply_error(session, "ERR Number of keys can't be greater than number of args");
        return;
    }
    if (keys < 0) {
        reply_error(session, "ERR Number of keys can't be negative");
        return;
    }
    struct resp_scripting *scripting = session->server->scripting;
    struct script_job job = {.scripting = scripting,
                             .session = session,
                             .request = request,
                             .run = true,
                             .keys = (size_t)keys,
                             .error = BYTE_BUFFER_INIT};
    if (by_sha) {
        if (request->lengths[1] != 40) {
            reply_error(session, "NOSCRIPT No matching script. Please use EVAL.");
            return;
        }
        for (size_t i = 0; i < 40; i++) {
            unsigned char c = request->argv[1][i];
            job.sha[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        job.sha[40] = '\0';
    } else {
        job.body = request->argv[1];
        job.body_length = (size_t)request->lengths[1];
        sha1_hex(job.body, job.body_length, job.sha);
    }
    /* Paused others first, then the state (SCRIPT takes only the lock). */
    bool exclusive = resp_exclusive_begin(session);
    /* CLIENT LIST's cmd= stays "eval", not the script's last command. */
    const char *name = atomic_load_explicit(&session->last_command, memory_order_relaxed);
    pthread_mutex_lock(&scripting->lock);
    scripting->read_only = read_only;
    script_job_start(scripting, &job, script_job_run);
    pthread_mutex_unlock(&scripting->lock);
    atomic_store_explicit(&session->last_command, name, memory_order_relaxed);
    if (exclusive) resp_exclusive_end(session);
    if (!job.replied) reply_job_error(session, &job);
    byte_buffer_free(&job.error);
}

/* EVAL, EVALSHA, FCALL and their _RO forms (skip_monitor) are shown to monitors as they
 * start, so that the commands they run follow them, as in Redis 7.0. */
static void feed_monitors(struct resp_session *session, const struct resp_request *request) {
    if (atomic_load_explicit(&session->server->monitor_count, memory_order_relaxed) > 0)
        resp_monitor_feed(session, request);
}

void command_eval(struct resp_session *session, const struct resp_request *request) {
    feed_monitors(session, request);
    eval_command(session, request, false, false);
}

void command_evalsha(struct resp_session *session, const struct resp_request *request) {
    feed_monitors(session, request);
    eval_command(session, request, true, false);
}

void command_eval_ro(struct resp_session *session, const struct resp_request *request) {
    feed_monitors(session, request);
    eval_command(session, request, false, true);
}

void command_evalsha_ro(struct resp_session *session, const struct resp_request *request) {
    feed_monitors(session, request);
    eval_command(session, request, true, true);
}

/* ---- SCRIPT ---------------------------------------------------------------------- */

static void script_load(struct resp_session *session, const struct resp_request *request) {
    struct resp_scripting *scripting = session->server->scripting;
    struct script_job job = {.scripting = scripting,
                             .session = session,
                             .request = request,
                             .body = request->argv[2],
                             .body_length = (size_t)request->lengths[2],
                             .error = BYTE_BUFFER_INIT};
    sha1_hex(job.body, job.body_length, job.sha);
    pthread_mutex_lock(&scripting->lock);
    script_job_start(scripting, &job, script_job_run);
    pthread_mutex_unlock(&scripting->lock);
    if (job.error.length > 0) {
        reply_job_error(session, &job);
    } else {
        reply_bulk(session, job.sha, 40);
    }
    byte_buffer_free(&job.error);
}

/* SCRIPT EXISTS's lookups (lua_cpcall(): the argument is the job, whose request holds
 * the shas from argument 2 on): a 0 or 1 reply for each. */
static int script_exists_run(lua_State *lua) {
    struct script_job *job = lua_touserdata(lua, 1);
    const struct resp_request *request = job->request;
    lua_getfield(lua, LUA_REGISTRYINDEX, scripts_key);
    for (size_t i = 2; i < request->argc; i++) {
        bool known = false;
        if (request->lengths[i] == 40) {
            char sha[41];
            for (size_t j = 0; j < 40; j++) {
                unsigned char c = request->argv[i][j];
                sha[j] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            sha[40] = '\0';
            lua_getfield(lua, -1, sha);
            known = lua_isfunction(lua, -1);
            lua_pop(lua, 1);
        }
        reply_integer(job->session, known ? 1 : 0);
        job->keys++; /* replies written */
    }
    return 0;
}

static void script_exists(struct resp_session *session, const struct resp_request *request) {
    struct resp_scripting *scripting = session->server->scripting;
    struct script_job job = {.scripting = scripting, .session = session, .request = request};
    reply_array(session, request->argc - 2);
    pthread_mutex_lock(&scripting->lock);
    if (scripting->lua == NULL || lua_cpcall(scripting->lua, script_exists_run, &job) != 0) {
        for (size_t i = job.keys; i < request->argc - 2; i++)
            reply_integer(session, 0); /* out of memory: a state without them, or none */
    }
    if (scripting->lua != NULL) lua_settop(scripting->lua, 0);
    pthread_mutex_unlock(&scripting->lock);
}

static void script_flush(struct resp_session *session, const struct resp_request *request) {
    if (request->argc == 3 && !argument_is(request, 2, "SYNC") &&
        !argument_is(request, 2, "ASYNC")) {
        reply_error(session, "ERR SCRIPT FLUSH only support SYNC|ASYNC option");
        return;
    }
    struct resp_scripting *scripting = session->server->scripting;
    pthread_mutex_lock(&scripting->lock);
    lua_State *fresh = new_state(scripting);
    if (fresh != NULL) {
        if (scripting->lua != NULL) lua_close(scripting->lua);
        scripting->lua = fresh;
    }
    pthread_mutex_unlock(&scripting->lock);
    if (fresh == NULL) {
        reply_error(session, "OOM out of memory: could not start a new Lua state");
        return;
    }
    reply_ok(session);
}

void command_script(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "DEBUG (YES|SYNC|NO)",
        "    Set the debug mode for subsequent scripts executed.",
        "EXISTS <sha1> [<sha1> ...]",
        "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Flush the Lua scripts cache. Very dangerous on replicas.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the scripts cache.",
        "    * SYNC: Synchronously flush the scripts cache.",
        "KILL",
        "    Kill the currently executing Lua script.",
        "LOAD <script>",
        "    Load a script into the scripts cache without executing it.",
        "HELP",
        "    Prints this help.",
    };
    size_t argc = request->argc;
    if (argument_is(request, 1, "HELP")) {
        if (argc != 2) {
            reply_subcommand_arity(session, request, "script");
            return;
        }
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "LOAD")) {
        if (argc != 3) {
            reply_subcommand_arity(session, request, "script");
            return;
        }
        script_load(session, request);
    } else if (argument_is(request, 1, "EXISTS")) {
        if (argc < 3) {
            reply_subcommand_arity(session, request, "script");
            return;
        }
        script_exists(session, request);
    } else if (argument_is(request, 1, "FLUSH")) {
        if (argc > 3) {
            reply_subcommand_arity(session, request, "script");
            return;
        }
        script_flush(session, request);
    } else if (argument_is(request, 1, "KILL")) {
        if (argc != 2) {
            reply_subcommand_arity(session, request, "script");
            return;
        }
        /* A script runs with every other connection waiting: none can be seen running. */
        reply_error(session, "NOTBUSY No scripts in execution right now.");
    } else if (argument_is(request, 1, "DEBUG")) {
        if (argc != 3) {
            reply_subcommand_arity(session, request, "script");
            return;
        }
        reply_error(session, "ERR SCRIPT DEBUG is not supported by strata");
    } else {
        reply_unknown_subcommand(session, request, "SCRIPT");
    }
}

/* ---- functions: FCALL and FUNCTION (Redis 7.0) ---------------------------------------
 *
 * Libraries live in a Lua state of their own (scripting->functions, guarded by the same
 * lock; functions_code keeps them), so SCRIPT FLUSH, which replaces the EVAL state,
 * keeps them, as Redis does. They are kept only in memory: strata has no RDB, so they
 * are lost when the server stops (docs/redis-compatibility.md). FUNCTION DUMP and
 * RESTORE are not supported. */

/* FCALL name numkeys key... arg..., and FCALL_RO. */
static void fcall_command(struct resp_session *session, const struct resp_request *request,
                          bool read_only) {
    int64_t keys = 0;
    const char *keys_error = NULL;
    if (!parse_int64(request->argv[2], (size_t)request->lengths[2], &keys)) {
        keys_error = "ERR Bad number of keys provided";
    } else if (keys > (int64_t)request->argc - 3) {
        keys_error = "ERR Number of keys can't be greater than number of args";
    } else if (keys < 0) {
        keys_error = "ERR Number of keys can't be negative";
    }
    struct resp_scripting *scripting = session->server->scripting;
    struct script_job job = {.scripting = scripting,
                             .session = session,
                             .request = request,
                             .run = true,
                             .keys = keys_error == NULL ? (size_t)keys : 0,
                             .error = BYTE_BUFFER_INIT,
                             .function = request->argv[1],
                             .function_length = (size_t)request->lengths[1],
                             .keys_error = keys_error,
                             .read_only = read_only};
    /* As EVAL: paused others first, then the state. */
    bool exclusive = resp_exclusive_begin(session);
    const char *name = atomic_load_explicit(&session->last_command, memory_order_relaxed);
    pthread_mutex_lock(&scripting->lock);
    script_job_start(scripting, &job, fcall_job_run);
    pthread_mutex_unlock(&scripting->lock);
    atomic_store_explicit(&session->last_command, name, memory_order_relaxed);
    if (exclusive) resp_exclusive_end(session);
    if (job.unknown) {
        reply_error(session, "ERR Function not found");
    } else if (!job.replied) {
        reply_job_error(session, &job);
    }
    byte_buffer_free(&job.error);
}

void command_fcall(struct resp_session *session, const struct resp_request *request) {
    feed_monitors(session, request);
    fcall_command(session, request, false);
}

void command_fcall_ro(struct resp_session *session, const struct resp_request *request) {
    feed_monitors(session, request);
    fcall_command(session, request, true);
}

/* What FUNCTION LOAD asks of the functions' state (lua_cpcall(): the argument). */
struct function_load {
    struct resp_scripting *scripting;
    const char *name; /* NUL-terminated, checked */
    const unsigned char *code;
    size_t code_length;
    size_t body_offset; /* where the body starts in code: at the shebang line's '\n' */
    bool replace;
    int64_t limit_ms;         /* the time limit (script_time_limit()) */
    struct byte_buffer error; /* the error reply (no NUL), when it failed */
};

/* Calls the manager's load() under the time limit; its error text goes to the job. */
static int function_load_run(lua_State *lua) {
    struct function_load *load = lua_touserdata(lua, 1);
    lua_getfield(lua, LUA_REGISTRYINDEX, manager_key);
    lua_getfield(lua, -1, "load");
    lua_pushstring(lua, load->name);
    lua_pushlstring(lua, (const char *)load->code + load->body_offset,
                    load->code_length - load->body_offset);
    lua_pushlstring(lua, (const char *)load->code, load->code_length);
    lua_pushboolean(lua, load->replace);
    load->scripting->wrote = false;
    load->scripting->started_ms = clock_monotonic_ms();
    load->scripting->limit_ms = load->limit_ms;
    lua_sethook(lua, time_hook, LUA_MASKCOUNT, SCRIPT_HOOK_INSTRUCTIONS);
    lua_call(lua, 4, 1);
    lua_sethook(lua, time_hook, 0, 0);
    size_t length;
    const char *text = lua_tolstring(lua, -1, &length);
    if (text != NULL) byte_buffer_append(&load->error, text, length);
    return 0;
}

/* Parses CODE's shebang line "#!lua name=<library>" as Redis 7.0 does: the library's name
 * (NUL-terminated) goes to NAME (SIZE bytes) and where the body starts to *BODY. Returns
 * the error reply's text, or NULL; the text may be built in ERROR (SIZE bytes). */
static const char *parse_library_metadata(const unsigned char *code, size_t length, char *name,
                                          size_t *body, char *error, size_t size) {
    if (length < 2 || memcmp(code, "#!", 2) != 0) return "ERR Missing library metadata";
    const unsigned char *newline = memchr(code, '\n', length);
    if (newline == NULL) return "ERR Invalid library metadata";
    *body = (size_t)(newline - code);
    const unsigned char *at = code, *end = newline;
    const unsigned char *engine = NULL;
    size_t engine_length = 0;
    bool named = false;
    while (at < end) {
        while (at < end && isspace(*at))
            at++;
        if (at == end) break;
        const unsigned char *part = at;
        while (at < end && !isspace(*at))
            at++;
        size_t part_length = (size_t)(at - part);
        if (engine == NULL) {
            engine = part + 2;
            engine_length = part_length - 2;
        } else if (part_length >= 5 && strncasecmp((const char *)part, "name=", 5) == 0) {
            if (named) return "ERR Invalid metadata value, name argument was given multiple times";
            named = true;
            /* An invalid name is left empty: refused below, after the engine. */
            size_t name_length = part_length - 5;
            bool valid = name_length > 0 && name_length < size;
            for (size_t i = 0; valid && i < name_length; i++)
                valid = isalnum(part[5 + i]) || part[5 + i] == '_';
            if (valid) memcpy(name, part + 5, name_length);
            name[valid ? name_length : 0] = '\0';
        } else {
            snprintf(error, size, "ERR Invalid metadata value given: %.*s", (int)part_length,
                     (const char *)part);
            return error;
        }
    }
    if (!named) return "ERR Library name was not given";
    if (engine_length != 3 || strncasecmp((const char *)engine, "LUA", 3) != 0) {
        snprintf(error, size, "ERR Engine '%.*s' not found", (int)engine_length,
                 (const char *)engine);
        return error;
    }
    if (name[0] == '\0')
        return "ERR Library names can only contain letters, numbers, or underscores(_) and must "
               "be at least one character long";
    return NULL;
}

/* Calls the manager's function named by the argument (a C string), with no arguments. */
static int function_manager_call(lua_State *lua) {
    const char *name = lua_touserdata(lua, 1);
    lua_getfield(lua, LUA_REGISTRYINDEX, manager_key);
    lua_getfield(lua, -1, name);
    lua_call(lua, 0, 0);
    return 0;
}

/* FUNCTION LOAD [REPLACE] code. */
static void function_load(struct resp_session *session, const struct resp_request *request) {
    bool replace = false;
    for (size_t i = 2; i + 1 < request->argc; i++) {
        if (!argument_is(request, i, "REPLACE")) {
            reply_errorf(session, "ERR Unknown option given: %.*s", (int)request->lengths[i],
                         (const char *)request->argv[i]);
            return;
        }
        replace = true;
    }
    const unsigned char *code = request->argv[request->argc - 1];
    size_t length = (size_t)request->lengths[request->argc - 1];
    char name[1024], text[1024];
    size_t body = 0;
    const char *error = parse_library_metadata(code, length, name, &body, text, sizeof(text));
    if (error != NULL) {
        reply_error(session, error);
        return;
    }
    struct resp_scripting *scripting = session->server->scripting;
    struct function_load load = {.scripting = scripting,
                                 .limit_ms = script_time_limit(session),
                                 .name = name,
                                 .code = code,
                                 .code_length = length,
                                 .body_offset = body,
                                 .replace = replace,
                                 .error = BYTE_BUFFER_INIT};
    pthread_mutex_lock(&scripting->lock);
    lua_State *lua = scripting->functions;
    bool failed = lua_cpcall(lua, function_load_run, &load) != 0;
    lua_sethook(lua, time_hook, 0, 0);
    if (failed) {
        /* Stopped outside the body's own protected call (the time limit, memory): the
         * globals may still be the load API's. */
        lua_settop(lua, 0);
        lua_cpcall(lua, function_manager_call, (void *)"reset");
    }
    lua_settop(lua, 0);
    lua_gc(lua, LUA_GCSTEP, 0);
    pthread_mutex_unlock(&scripting->lock);
    byte_buffer_append(&load.error, "", 1);
    if (failed || load.error.failed) {
        reply_error(session, "OOM out of memory in the script engine");
    } else if (load.error.length > 1) {
        reply_line_text(session, (const char *)load.error.data, load.error.length - 1, true);
    } else {
        reply_bulk_text(session, name);
    }
    byte_buffer_free(&load.error);
}

/* What FUNCTION LIST, DELETE and STATS ask of the functions' state (lua_cpcall()). */
struct function_query {
    struct resp_session *session;
    const struct resp_request *request;
    const unsigned char *pattern; /* LIST's LIBRARYNAME, or NULL */
    size_t pattern_length;
    bool with_code;
    bool found;   /* DELETE: the library was there */
    bool replied; /* a reply was begun (an error after it cannot be replied) */
};

/* Replies FUNCTION LIST's entry for the library on top of LUA's stack. */
static void reply_library(lua_State *lua, struct function_query *query) {
    struct resp_session *session = query->session;
    size_t length;
    const char *text;
    reply_map(session, query->with_code ? 4 : 3);
    reply_bulk_text(session, "library_name");
    lua_getfield(lua, -1, "name");
    text = lua_tolstring(lua, -1, &length);
    reply_bulk(session, text, length);
    lua_pop(lua, 1);
    reply_bulk_text(session, "engine");
    reply_bulk_text(session, "LUA");
    reply_bulk_text(session, "functions");
    lua_getfield(lua, -1, "functions");
    size_t count = lua_objlen(lua, -1);
    reply_array(session, count);
    for (size_t i = 1; i <= count; i++) {
        lua_rawgeti(lua, -1, (int)i);
        reply_map(session, 3);
        reply_bulk_text(session, "name");
        lua_getfield(lua, -1, "name");
        text = lua_tolstring(lua, -1, &length);
        reply_bulk(session, text, length);
        lua_pop(lua, 1);
        reply_bulk_text(session, "description");
        lua_getfield(lua, -1, "description");
        text = lua_tolstring(lua, -1, &length);
        if (text != NULL) {
            reply_bulk(session, text, length);
        } else {
            reply_null(session);
        }
        lua_pop(lua, 1);
        reply_bulk_text(session, "flags");
        lua_getfield(lua, -1, "flags");
        size_t flags = lua_objlen(lua, -1);
        reply_set(session, flags);
        for (size_t j = 1; j <= flags; j++) {
            lua_rawgeti(lua, -1, (int)j);
            reply_simple(session, lua_tostring(lua, -1)); /* as Redis: status replies */
            lua_pop(lua, 1);
        }
        lua_pop(lua, 2);
    }
    lua_pop(lua, 1);
    if (query->with_code) {
        reply_bulk_text(session, "library_code");
        lua_getfield(lua, -1, "code");
        text = lua_tolstring(lua, -1, &length);
        reply_bulk(session, text, length);
        lua_pop(lua, 1);
    }
}

/* FUNCTION LIST's reply: the libraries in the order they were first loaded. */
static int function_list_run(lua_State *lua) {
    struct function_query *query = lua_touserdata(lua, 1);
    lua_getfield(lua, LUA_REGISTRYINDEX, manager_key);
    lua_getfield(lua, -1, "libraries");
    lua_getfield(lua, -2, "order");
    size_t count = lua_objlen(lua, -1);
    size_t matching = 0;
    for (size_t pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            query->replied = true;
            reply_array(query->session, matching);
        }
        for (size_t i = 1; i <= count; i++) {
            lua_rawgeti(lua, -1, (int)i);
            size_t length;
            const char *name = lua_tolstring(lua, -1, &length);
            bool match = query->pattern == NULL || glob_match(query->pattern, query->pattern_length,
                                                              (const unsigned char *)name, length);
            if (match && pass == 0) matching++;
            if (match && pass == 1) {
                lua_rawget(lua, -3);
                reply_library(lua, query);
            }
            lua_pop(lua, 1);
        }
    }
    return 0;
}

/* FUNCTION DELETE's removal: query->found says whether the library was there. */
static int function_delete_run(lua_State *lua) {
    struct function_query *query = lua_touserdata(lua, 1);
    lua_getfield(lua, LUA_REGISTRYINDEX, manager_key);
    lua_getfield(lua, -1, "delete");
    lua_pushlstring(lua, (const char *)query->request->argv[2], (size_t)query->request->lengths[2]);
    lua_call(lua, 1, 1);
    query->found = lua_toboolean(lua, -1);
    return 0;
}

/* FUNCTION STATS's reply: no script can be seen running (every other connection waits
 * while one runs), and the counts. */
static int function_stats_run(lua_State *lua) {
    struct function_query *query = lua_touserdata(lua, 1);
    lua_getfield(lua, LUA_REGISTRYINDEX, manager_key);
    size_t counts[2] = {0, 0};
    static const char *const tables[] = {"libraries", "functions"};
    for (size_t i = 0; i < 2; i++) {
        lua_getfield(lua, 2, tables[i]); /* 1: the query, 2: the manager */
        lua_pushnil(lua);
        while (lua_next(lua, -2) != 0) {
            counts[i]++;
            lua_pop(lua, 1);
        }
        lua_pop(lua, 1);
    }
    struct resp_session *session = query->session;
    query->replied = true;
    reply_map(session, 2);
    reply_bulk_text(session, "running_script");
    reply_null(session);
    reply_bulk_text(session, "engines");
    reply_map(session, 1);
    reply_bulk_text(session, "LUA");
    reply_map(session, 2);
    reply_bulk_text(session, "libraries_count");
    reply_integer(session, (int64_t)counts[0]);
    reply_bulk_text(session, "functions_count");
    reply_integer(session, (int64_t)counts[1]);
    return 0;
}

/* Runs RUN with QUERY on the functions' state under the lock. False when it ran out of
 * memory (then the session is closed if a reply was begun). */
static bool function_query(struct resp_session *session, lua_CFunction run,
                           struct function_query *query) {
    struct resp_scripting *scripting = session->server->scripting;
    pthread_mutex_lock(&scripting->lock);
    lua_State *lua = scripting->functions;
    bool ok = lua_cpcall(lua, run, query) == 0;
    lua_settop(lua, 0);
    pthread_mutex_unlock(&scripting->lock);
    if (!ok && query->replied) session->closing = true;
    if (!ok && !query->replied) reply_error(session, "OOM out of memory in the script engine");
    return ok;
}

/* FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]. */
static void function_list(struct resp_session *session, const struct resp_request *request) {
    struct function_query query = {.session = session, .request = request};
    for (size_t i = 2; i < request->argc; i++) {
        if (argument_is(request, i, "WITHCODE") && !query.with_code) {
            query.with_code = true;
        } else if (argument_is(request, i, "LIBRARYNAME") && query.pattern == NULL) {
            if (i + 1 >= request->argc) {
                reply_error(session, "ERR library name argument was not given");
                return;
            }
            i++;
            query.pattern = request->argv[i];
            query.pattern_length = (size_t)request->lengths[i];
        } else {
            reply_errorf(session, "ERR Unknown argument %.*s", (int)request->lengths[i],
                         (const char *)request->argv[i]);
            return;
        }
    }
    function_query(session, function_list_run, &query);
}

void command_function(struct resp_session *session, const struct resp_request *request) {
    static const char *const help[] = {
        "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "LOAD [REPLACE] <FUNCTION CODE>",
        "    Create a new library with the given library name and code.",
        "DELETE <LIBRARY NAME>",
        "    Delete the given library.",
        "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
        "    Return general information on all the libraries:",
        "    * Library name",
        "    * The engine used to run the Library",
        "    * Library description",
        "    * Functions list",
        "    * Library code (if WITHCODE is given)",
        "    It also possible to get only function that matches a pattern using LIBRARYNAME "
        "argument.",
        "STATS",
        "    Return information about the current function running:",
        "    * Function name",
        "    * Command used to run the function",
        "    * Duration in MS that the function is running",
        "    If no function is running, return nil",
        "    In addition, returns a list of available engines.",
        "KILL",
        "    Kill the current running function.",
        "FLUSH [ASYNC|SYNC]",
        "    Delete all the libraries.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the libraries.",
        "    * SYNC: Synchronously flush the libraries.",
        "DUMP",
        "    Return a serialized payload representing the current libraries, can be restored "
        "using FUNCTION RESTORE command",
        "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
        "    Restore the libraries represented by the given payload, it is possible to give a "
        "restore policy to",
        "    control how to handle existing libraries (default APPEND):",
        "    * FLUSH: delete all existing libraries.",
        "    * APPEND: appends the restored libraries to the existing libraries. On collision, "
        "abort.",
        "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
        "replace the old",
        "      libraries with the new libraries (notice that even on this option there is a "
        "chance of failure",
        "      in case of functions name collision with another library).",
        "HELP",
        "    Prints this help.",
    };
    size_t argc = request->argc;
    struct function_query query = {.session = session, .request = request};
    if (argument_is(request, 1, "HELP")) {
        if (argc != 2) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        reply_help(session, help, sizeof(help) / sizeof(help[0]));
    } else if (argument_is(request, 1, "LOAD")) {
        if (argc < 3) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        function_load(session, request);
    } else if (argument_is(request, 1, "LIST")) {
        function_list(session, request);
    } else if (argument_is(request, 1, "DELETE")) {
        if (argc != 3) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        if (!function_query(session, function_delete_run, &query)) return;
        if (query.found) {
            reply_ok(session);
        } else {
            reply_error(session, "ERR Library not found");
        }
    } else if (argument_is(request, 1, "FLUSH")) {
        if (argc > 3) {
            reply_error(session, "ERR unknown subcommand or wrong number of arguments for "
                                 "'flush'. Try FUNCTION HELP.");
            return;
        }
        if (argc == 3 && !argument_is(request, 2, "SYNC") && !argument_is(request, 2, "ASYNC")) {
            reply_error(session, "ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
            return;
        }
        struct resp_scripting *scripting = session->server->scripting;
        pthread_mutex_lock(&scripting->lock);
        bool flushed =
            lua_cpcall(scripting->functions, function_manager_call, (void *)"flush") == 0;
        lua_settop(scripting->functions, 0);
        pthread_mutex_unlock(&scripting->lock);
        if (flushed) {
            reply_ok(session);
        } else {
            reply_error(session, "OOM out of memory in the script engine");
        }
    } else if (argument_is(request, 1, "STATS")) {
        if (argc != 2) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        function_query(session, function_stats_run, &query);
    } else if (argument_is(request, 1, "KILL")) {
        if (argc != 2) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        /* A function runs with every other connection waiting: none can be seen running. */
        reply_error(session, "NOTBUSY No scripts in execution right now.");
    } else if (argument_is(request, 1, "DUMP")) {
        if (argc != 2) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        reply_error(session, "ERR FUNCTION DUMP is not supported by strata");
    } else if (argument_is(request, 1, "RESTORE")) {
        if (argc < 3) {
            reply_subcommand_arity(session, request, "function");
            return;
        }
        reply_error(session, "ERR FUNCTION RESTORE is not supported by strata");
    } else {
        reply_unknown_subcommand(session, request, "FUNCTION");
    }
}
