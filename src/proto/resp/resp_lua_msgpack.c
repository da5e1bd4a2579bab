/* cmsgpack for Lua scripts: MessagePack (https://github.com/msgpack/msgpack/blob/master/
 * spec.md) as Redis 7.0's scripts see it, written for strata from the spec and from
 * Redis 7.0.15's observed behaviour (docs/redis-compatibility.md, "Scripting").
 *
 * cmsgpack.pack(v1, v2, ...) returns the values' encodings, concatenated:
 *   nil (and any value MessagePack has no type for: functions, threads, userdata) as nil;
 *   booleans as true/false; a number that is an integer in int64's range as the smallest
 *   integer type that holds it (positive fixint, uint8..uint64 for the positive ones,
 *   negative fixint, int8..int64 for the negative ones), any other as float32 when that
 *   is exact (infinities included) else float64; strings as fixstr/str8/str16/str32;
 *   a table whose keys are exactly the integers 1..n as an array (fixarray/array16/
 *   array32; the empty table too), any other as a map (fixmap/map16/map32) in lua_next()
 *   order. A table nested PACK_MAX_NESTING deep (the arguments being depth 0) is packed
 *   as nil, as Redis does, so a table that contains itself packs.
 * cmsgpack.unpack(s) returns every value s holds; cmsgpack.unpack_one(s [, offset]) the
 *   offset after the first value at OFFSET (-1 when that was the last) and that value;
 *   cmsgpack.unpack_limit(s, limit [, offset]) the same with at most LIMIT values (0: all
 *   of them, and then no offset, as in Redis).
 *   Integers and floats come back as Lua numbers (a uint64 read as int64, as Redis does),
 *   str as strings, arrays as tables 1..n (nil elements left out), maps as tables. bin,
 *   ext and 0xc1 are "Bad data format in input." (Redis's cmsgpack does not read them); a
 *   value cut short is "Missing bytes in input.".
 * The errors and the Lua stack limits (about 8000 values returned at once, about 4000
 * levels of nesting) are Redis's, texts included. */
#include "proto/resp/resp_lua_msgpack.h"

#include <float.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Tables nested this deep are packed as nil (Redis's LUACMSGPACK_MAX_NESTING). */
#define PACK_MAX_NESTING 16

/* The texts of Redis's errors. */
#define MISSING_BYTES   "Missing bytes in input."
#define BAD_FORMAT      "Bad data format in input."
#define TOO_MANY_VALUES "too many return values at once; use unpack_one or unpack_limit instead."
#define ARRAY_TOO_DEEP  "in function mp_decode_to_lua_array"

/* ---- packing ---------------------------------------------------------------------- */

/* The bytes pack() has written so far. DATA is the block of a full userdata kept at stack
 * index SLOT of LUA (so the garbage collector frees it whatever error ends the call); a
 * bigger one replaces it there when it fills. */
struct pack_buffer {
    lua_State *lua;
    int slot;
    unsigned char *data;
    size_t used;
    size_t capacity;
};

/* Makes room for COUNT more bytes in BUFFER. May raise a Lua error (out of memory). */
static void pack_reserve(struct pack_buffer *buffer, size_t count) {
    if (buffer->capacity - buffer->used >= count) return;
    size_t capacity = buffer->capacity * 2;
    while (capacity - buffer->used < count)
        capacity *= 2;
    luaL_checkstack(buffer->lua, 1, "in function cmsgpack.pack");
    unsigned char *grown = lua_newuserdata(buffer->lua, capacity);
    memcpy(grown, buffer->data, buffer->used);
    lua_replace(buffer->lua, buffer->slot);
    buffer->data = grown;
    buffer->capacity = capacity;
}

static void pack_bytes(struct pack_buffer *buffer, const void *bytes, size_t count) {
    pack_reserve(buffer, count);
    memcpy(buffer->data + buffer->used, bytes, count);
    buffer->used += count;
}

/* Writes the type byte TYPE and then VALUE big-endian in WIDTH bytes (0, 1, 2, 4 or 8). */
static void pack_header(struct pack_buffer *buffer, unsigned char type, uint64_t value, int width) {
    unsigned char bytes[9];
    bytes[0] = type;
    for (int i = 0; i < width; i++)
        bytes[1 + i] = (unsigned char)(value >> (8 * (width - 1 - i)));
    pack_bytes(buffer, bytes, 1 + (size_t)width);
}

static void pack_integer(struct pack_buffer *buffer, int64_t value) {
    if (value >= 0) {
        uint64_t n = (uint64_t)value;
        if (n <= 0x7f)
            pack_header(buffer, (unsigned char)n, 0, 0);
        else if (n <= UINT8_MAX)
            pack_header(buffer, 0xcc, n, 1);
        else if (n <= UINT16_MAX)
            pack_header(buffer, 0xcd, n, 2);
        else if (n <= UINT32_MAX)
            pack_header(buffer, 0xce, n, 4);
        else
            pack_header(buffer, 0xcf, n, 8);
    } else if (value >= -32) {
        pack_header(buffer, (unsigned char)(0xe0 | (value + 32)), 0, 0);
    } else if (value >= INT8_MIN) {
        pack_header(buffer, 0xd0, (uint64_t)value, 1);
    } else if (value >= INT16_MIN) {
        pack_header(buffer, 0xd1, (uint64_t)value, 2);
    } else if (value >= INT32_MIN) {
        pack_header(buffer, 0xd2, (uint64_t)value, 4);
    } else {
        pack_header(buffer, 0xd3, (uint64_t)value, 8);
    }
}

/* An integral NUMBER in int64's range as the smallest integer; any other as float32 when
 * that holds it exactly (the infinities too), else float64. No conversion here leaves
 * its type's range (those are undefined behaviour in C). */
static void pack_number(struct pack_buffer *buffer, double number) {
    if (number >= -9223372036854775808.0 && number < 9223372036854775808.0 &&
        number == (double)(int64_t)number) {
        pack_integer(buffer, (int64_t)number);
        return;
    }
    if (isinf(number) || (fabs(number) <= FLT_MAX && (double)(float)number == number)) {
        float single = (float)number;
        uint32_t bits;
        memcpy(&bits, &single, sizeof(bits));
        pack_header(buffer, 0xca, bits, 4);
        return;
    }
    uint64_t bits;
    memcpy(&bits, &number, sizeof(bits));
    pack_header(buffer, 0xcb, bits, 8);
}

static void pack_string(struct pack_buffer *buffer, const char *bytes, size_t length) {
    if (length < 32)
        pack_header(buffer, (unsigned char)(0xa0 | length), 0, 0);
    else if (length <= UINT8_MAX)
        pack_header(buffer, 0xd9, length, 1);
    else if (length <= UINT16_MAX)
        pack_header(buffer, 0xda, length, 2);
    else if (length <= UINT32_MAX)
        pack_header(buffer, 0xdb, length, 4);
    else
        luaL_error(buffer->lua, "MessagePack cannot pack a string of more than 4 GiB.");
    pack_bytes(buffer, bytes, length);
}

/* The header of an array (ARRAY) or a map of COUNT elements (pairs). */
static void pack_container(struct pack_buffer *buffer, bool array, size_t count) {
    if (count > UINT32_MAX)
        luaL_error(buffer->lua, "MessagePack cannot pack a table of more than 2^32 entries.");
    if (count < 16)
        pack_header(buffer, (unsigned char)((array ? 0x90 : 0x80) | count), 0, 0);
    else if (count <= UINT16_MAX)
        pack_header(buffer, array ? 0xdc : 0xde, count, 2);
    else
        pack_header(buffer, array ? 0xdd : 0xdf, count, 4);
}

static void pack_value(struct pack_buffer *buffer, int depth);

/* Packs the table at the top of the stack (left there), DEPTH deep: an array when its
 * keys are exactly 1..n, else a map. Raw accesses only: no metamethod runs. */
static void pack_table(struct pack_buffer *buffer, int depth) {
    lua_State *lua = buffer->lua;
    luaL_checkstack(lua, 3, "in function cmsgpack.pack");
    int table = lua_gettop(lua);
    size_t count = 0;
    double highest = 0;
    bool array = true;
    lua_pushnil(lua);
    while (lua_next(lua, table) != 0) {
        lua_pop(lua, 1);
        double key = lua_type(lua, -1) == LUA_TNUMBER ? lua_tonumber(lua, -1) : 0;
        count++;
        if (array && key >= 1 && key == floor(key) && !isinf(key)) {
            if (key > highest) highest = key;
        } else {
            array = false;
        }
    }
    if (array && highest == (double)count) {
        pack_container(buffer, true, count);
        for (size_t i = 1; i <= count; i++) {
            lua_rawgeti(lua, table, (int)i);
            pack_value(buffer, depth + 1);
            lua_pop(lua, 1);
        }
        return;
    }
    pack_container(buffer, false, count);
    lua_pushnil(lua);
    while (lua_next(lua, table) != 0) {
        lua_pushvalue(lua, -2);
        pack_value(buffer, depth + 1);
        lua_pop(lua, 1);
        pack_value(buffer, depth + 1);
        lua_pop(lua, 1);
    }
}

/* Packs the value at the top of the stack (left there), DEPTH deep (see the top). */
static void pack_value(struct pack_buffer *buffer, int depth) {
    lua_State *lua = buffer->lua;
    switch (lua_type(lua, -1)) {
    case LUA_TBOOLEAN:
        pack_header(buffer, lua_toboolean(lua, -1) ? 0xc3 : 0xc2, 0, 0);
        break;
    case LUA_TNUMBER:
        pack_number(buffer, lua_tonumber(lua, -1));
        break;
    case LUA_TSTRING: {
        size_t length;
        const char *bytes = lua_tolstring(lua, -1, &length);
        pack_string(buffer, bytes, length);
        break;
    }
    case LUA_TTABLE:
        if (depth < PACK_MAX_NESTING)
            pack_table(buffer, depth);
        else
            pack_header(buffer, 0xc0, 0, 0); /* nested too deep */
        break;
    default:
        pack_header(buffer, 0xc0, 0, 0);
        break;
    }
}

/* cmsgpack.pack(v1, v2, ...): the values' encodings, concatenated, as one string. */
static int msgpack_pack(lua_State *lua) {
    int count = lua_gettop(lua);
    if (count == 0) return luaL_argerror(lua, 0, "MessagePack pack needs input.");
    luaL_checkstack(lua, 2, "in function cmsgpack.pack");
    struct pack_buffer buffer = {.lua = lua, .slot = count + 1, .capacity = 64};
    buffer.data = lua_newuserdata(lua, buffer.capacity);
    for (int i = 1; i <= count; i++) {
        lua_pushvalue(lua, i);
        pack_value(&buffer, 0);
        lua_pop(lua, 1);
    }
    lua_pushlstring(lua, (const char *)buffer.data, buffer.used);
    return 1;
}

/* ---- unpacking -------------------------------------------------------------------- */

/* What is left to read of unpack()'s input. */
struct unpack_cursor {
    const unsigned char *bytes;
    size_t left;
};

/* Takes COUNT bytes from CURSOR, or raises "Missing bytes in input.". */
static const unsigned char *unpack_take(lua_State *lua, struct unpack_cursor *cursor,
                                        size_t count) {
    if (cursor->left < count) luaL_error(lua, MISSING_BYTES);
    const unsigned char *taken = cursor->bytes;
    cursor->bytes += count;
    cursor->left -= count;
    return taken;
}

/* A big-endian unsigned integer of WIDTH bytes (1, 2, 4 or 8) from CURSOR. */
static uint64_t unpack_unsigned(lua_State *lua, struct unpack_cursor *cursor, int width) {
    const unsigned char *bytes = unpack_take(lua, cursor, (size_t)width);
    uint64_t value = 0;
    for (int i = 0; i < width; i++)
        value = value << 8 | bytes[i];
    return value;
}

static void unpack_value(lua_State *lua, struct unpack_cursor *cursor);

static void unpack_string(lua_State *lua, struct unpack_cursor *cursor, size_t length) {
    const unsigned char *bytes = unpack_take(lua, cursor, length);
    lua_pushlstring(lua, (const char *)bytes, length);
}

/* Pushes a table of the COUNT values that follow, as 1..COUNT. The table is built as
 * Redis builds it (grown from empty), so # answers the same when an element is nil. */
static void unpack_array(lua_State *lua, struct unpack_cursor *cursor, uint64_t count) {
    lua_newtable(lua);
    for (uint64_t i = 1; i <= count; i++) {
        luaL_checkstack(lua, 2, ARRAY_TOO_DEEP);
        lua_pushnumber(lua, (lua_Number)i);
        unpack_value(lua, cursor);
        lua_settable(lua, -3);
    }
}

/* Pushes a table of the COUNT key/value pairs that follow. A nil or NaN key is Lua's
 * error ("table index is nil"), as in Redis. */
static void unpack_map(lua_State *lua, struct unpack_cursor *cursor, uint64_t count) {
    lua_newtable(lua);
    for (uint64_t i = 0; i < count; i++) {
        luaL_checkstack(lua, 2, TOO_MANY_VALUES);
        unpack_value(lua, cursor);
        unpack_value(lua, cursor);
        lua_settable(lua, -3);
    }
}

/* Reads one value from CURSOR and pushes it (the caller made room for one slot), or
 * raises the error for a value cut short or a type Redis's cmsgpack does not read. */
static void unpack_value(lua_State *lua, struct unpack_cursor *cursor) {
    unsigned char type = *unpack_take(lua, cursor, 1);
    if (type <= 0x7f) {
        lua_pushnumber(lua, type);
    } else if (type >= 0xe0) {
        lua_pushnumber(lua, (int)type - 256);
    } else if (type >= 0xa0 && type <= 0xbf) {
        unpack_string(lua, cursor, type & 0x1f);
    } else if (type >= 0x90 && type <= 0x9f) {
        unpack_array(lua, cursor, type & 0x0f);
    } else if (type >= 0x80 && type <= 0x8f) {
        unpack_map(lua, cursor, type & 0x0f);
    } else {
        switch (type) {
        case 0xc0:
            lua_pushnil(lua);
            break;
        case 0xc2:
        case 0xc3:
            lua_pushboolean(lua, type == 0xc3);
            break;
        case 0xcc:
            lua_pushnumber(lua, (lua_Number)unpack_unsigned(lua, cursor, 1));
            break;
        case 0xcd:
            lua_pushnumber(lua, (lua_Number)unpack_unsigned(lua, cursor, 2));
            break;
        case 0xce:
            lua_pushnumber(lua, (lua_Number)unpack_unsigned(lua, cursor, 4));
            break;
        case 0xcf: /* read as int64, as Redis does: 2^64 - 1 is -1 */
        case 0xd3:
            lua_pushnumber(lua, (lua_Number)(int64_t)unpack_unsigned(lua, cursor, 8));
            break;
        case 0xd0:
            lua_pushnumber(lua, (int8_t)unpack_unsigned(lua, cursor, 1));
            break;
        case 0xd1:
            lua_pushnumber(lua, (int16_t)unpack_unsigned(lua, cursor, 2));
            break;
        case 0xd2:
            lua_pushnumber(lua, (int32_t)unpack_unsigned(lua, cursor, 4));
            break;
        case 0xca: {
            uint32_t bits = (uint32_t)unpack_unsigned(lua, cursor, 4);
            float single;
            memcpy(&single, &bits, sizeof(single));
            lua_pushnumber(lua, single);
            break;
        }
        case 0xcb: {
            uint64_t bits = unpack_unsigned(lua, cursor, 8);
            double number;
            memcpy(&number, &bits, sizeof(number));
            lua_pushnumber(lua, number);
            break;
        }
        case 0xd9:
            unpack_string(lua, cursor, (size_t)unpack_unsigned(lua, cursor, 1));
            break;
        case 0xda:
            unpack_string(lua, cursor, (size_t)unpack_unsigned(lua, cursor, 2));
            break;
        case 0xdb:
            unpack_string(lua, cursor, (size_t)unpack_unsigned(lua, cursor, 4));
            break;
        case 0xdc:
            unpack_array(lua, cursor, unpack_unsigned(lua, cursor, 2));
            break;
        case 0xdd:
            unpack_array(lua, cursor, unpack_unsigned(lua, cursor, 4));
            break;
        case 0xde:
            unpack_map(lua, cursor, unpack_unsigned(lua, cursor, 2));
            break;
        case 0xdf:
            unpack_map(lua, cursor, unpack_unsigned(lua, cursor, 4));
            break;
        default: /* 0xc1, bin, ext */
            luaL_error(lua, BAD_FORMAT);
        }
    }
}

/* Unpacks up to LIMIT values (0: all) of the string argument 1 from byte OFFSET and
 * returns them, preceded, when WITH_OFFSET, by the offset after the last one (-1 when
 * the input ends there). The other arguments are dropped first, so the values have all
 * but one of the C stack's LUAI_MAXCSTACK slots (Redis's limit of 7999). */
static int unpack_values(lua_State *lua, lua_Integer limit, lua_Integer offset, bool with_offset) {
    size_t length;
    const char *input = luaL_checklstring(lua, 1, &length);
    if (offset < 0 || limit < 0) {
        /* Redis names the input's length as the limit. */
        return luaL_error(lua, "Invalid request to unpack with offset of %d and limit of %d.",
                          (int)offset, (int)length);
    }
    if ((uint64_t)offset > length) {
        return luaL_error(lua, "Start offset %d greater than input length %d.", (int)offset,
                          (int)length);
    }
    lua_settop(lua, 1);
    struct unpack_cursor cursor = {.bytes = (const unsigned char *)input + offset,
                                   .left = length - (size_t)offset};
    int count = 0;
    while (cursor.left > 0 && (limit == 0 || count < limit)) {
        luaL_checkstack(lua, 1, TOO_MANY_VALUES);
        unpack_value(lua, &cursor);
        count++;
    }
    if (!with_offset) return count;
    /* The last luaL_checkstack() left a free slot past the value it made room for (and
     * with no value, LUA_MINSTACK are free): room for the offset. */
    lua_pushnumber(lua, cursor.left == 0 ? -1 : (lua_Number)(length - cursor.left));
    lua_insert(lua, -(count + 1));
    return count + 1;
}

/* cmsgpack.unpack(s): every value S holds. */
static int msgpack_unpack(lua_State *lua) {
    return unpack_values(lua, 0, 0, false);
}

/* cmsgpack.unpack_one(s [, offset]): the offset after the value at OFFSET (default 0;
 * -1 when S ends there) and the value. */
static int msgpack_unpack_one(lua_State *lua) {
    lua_Integer offset = luaL_optinteger(lua, 2, 0);
    return unpack_values(lua, 1, offset, true);
}

/* cmsgpack.unpack_limit(s, limit [, offset]): the offset after them and up to LIMIT
 * values from OFFSET (default 0); with a LIMIT of 0, all the values and no offset (as
 * Redis). */
static int msgpack_unpack_limit(lua_State *lua) {
    lua_Integer limit = luaL_checkinteger(lua, 2);
    lua_Integer offset = luaL_optinteger(lua, 3, 0);
    return unpack_values(lua, limit, offset, limit > 0);
}

int resp_luaopen_cmsgpack(lua_State *lua) {
    static const luaL_Reg functions[] = {
        {"pack", msgpack_pack},
        {"unpack", msgpack_unpack},
        {"unpack_one", msgpack_unpack_one},
        {"unpack_limit", msgpack_unpack_limit},
    };
    lua_createtable(lua, 0, 8);
    for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++) {
        lua_pushcfunction(lua, functions[i].func);
        lua_setfield(lua, -2, functions[i].name);
    }
    /* Redis's names (the version is that of the API this one follows). */
    lua_pushliteral(lua, "cmsgpack");
    lua_setfield(lua, -2, "_NAME");
    lua_pushliteral(lua, "lua-cmsgpack 0.4.0");
    lua_setfield(lua, -2, "_VERSION");
    lua_pushliteral(lua, "MessagePack C implementation for Lua");
    lua_setfield(lua, -2, "_DESCRIPTION");
    return 1;
}
