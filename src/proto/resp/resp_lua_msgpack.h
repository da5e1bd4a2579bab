/* cmsgpack: the MessagePack library Redis gives Lua scripts (resp_lua_msgpack.c). */
#ifndef STRATA_RESP_LUA_MSGPACK_H
#define STRATA_RESP_LUA_MSGPACK_H

#include <lua.h>

/* Opens the cmsgpack library in LUA: pushes its table (pack, unpack, unpack_one,
 * unpack_limit) and returns 1, as a lua_CFunction module opener does. The caller makes
 * it a global (resp_scripting.c, setup_state()). */
int resp_luaopen_cmsgpack(lua_State *lua);

#endif
