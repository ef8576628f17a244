/*
 * A protojson line straight to a message's wire bytes, for the plain lines only.
 *
 * Reading a JSONL line through Python objects (orjson, then telemetry_export.protojson_reader's
 * readers, then a constructor) cost a reader process more than everything else recording does
 * with the event. Here one pass over the line's bytes writes the wire bytes that
 * `Message.FromString` reads into the message `json_format.Parse` gives.
 *
 * It takes only what protojson_reader's fast path takes: canonical or original field names,
 * strings for strings, JSON numbers (integers, or canonical integer strings for 64-bit ones),
 * booleans, objects, RFC 3339 timestamps in UTC, Structs no deeper than the nesting rule.
 * Anything else (a null, a repeated key, an unknown field, a type it does not read, text that
 * is not strict JSON or not UTF-8) makes it give up: it returns NotImplemented, and the Python
 * path decides, with json_format's answer and words. tests/test_protojson_wire.py holds it to
 * json_format.Parse.
 *
 * The message types come from their descriptors (telemetry_export.protojson_wire builds the
 * table), so a field added to the schema is read without a change here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Field kinds, as telemetry_export.protojson_wire numbers them. */
enum {
    GIVE_UP_KIND = 0, STRING = 1, BOOL = 2, DOUBLE = 3, INT32 = 4, INT64 = 5, UINT32 = 6, UINT64 = 7,
    MESSAGE = 8, TIMESTAMP = 9, STRUCT = 10, MAP = 11
};
enum { VARINT = 0, FIXED64 = 1, LENGTH_DELIMITED = 2 };
/* Deeper JSON than this is left to the Python path, which says what is wrong with it. */
enum { MAX_JSON_DEPTH = 200, MAX_FIELDS = 64 };
/*
 * Keys of one object (a Struct's or a map's) are checked against every earlier one: past this
 * many the object is left to the Python path, so that a line of many keys costs time in
 * proportion to its length, never to its square.
 */
enum { MAX_KEYS = 256 };

typedef struct {
    char *name; /* the JSON key: json_name or the original name */
    Py_ssize_t name_size;
    int index;  /* which field (both names share it: given twice is given up) */
    uint32_t number;
    int kind, value_kind; /* value_kind: a map's value */
    int message;          /* MESSAGE, or a MAP's message value: the type's index */
} Field;

typedef struct {
    Field *fields;
    int count;
} MessageType;

typedef struct {
    MessageType *types;
    int count;
} Schema;

/* ---- output ---- */

typedef struct {
    uint8_t *data;
    size_t size, capacity;
} Out;

static int grow(Out *out, size_t more) {
    if (out->size + more <= out->capacity) return 1;
    size_t capacity = out->capacity ? out->capacity * 2 : 256;
    while (capacity < out->size + more) capacity *= 2;
    uint8_t *data = PyMem_Realloc(out->data, capacity);
    if (data == NULL) return 0;
    out->data = data;
    out->capacity = capacity;
    return 1;
}

static int put(Out *out, const void *data, size_t size) {
    if (!grow(out, size)) return 0;
    memcpy(out->data + out->size, data, size);
    out->size += size;
    return 1;
}

static int put_varint(Out *out, uint64_t value) {
    if (!grow(out, 10)) return 0;
    while (value >= 0x80) {
        out->data[out->size++] = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    out->data[out->size++] = (uint8_t)value;
    return 1;
}

static int put_tag(Out *out, uint32_t number, int wire_type) {
    return put_varint(out, ((uint64_t)number << 3) | (uint64_t)wire_type);
}

static int put_delimited(Out *out, uint32_t number, const uint8_t *data, size_t size) {
    return put_tag(out, number, LENGTH_DELIMITED) && put_varint(out, size) && put(out, data, size);
}

static int put_double(Out *out, uint32_t number, double value) {
    uint64_t bits;
    uint8_t bytes[8];
    memcpy(&bits, &value, sizeof bits);
    for (int i = 0; i < 8; i++) bytes[i] = (uint8_t)(bits >> (8 * i));
    return put_tag(out, number, FIXED64) && put(out, bytes, 8);
}

/* ---- reading JSON ---- */

typedef enum { OK, GIVE_UP, NO_MEMORY } Outcome;

typedef struct {
    const uint8_t *at, *end;
    const Schema *schema;
    Out text;      /* the last string read, decoded */
    int depth;
} Reader;

static void skip_space(Reader *r) {
    while (r->at < r->end && (*r->at == ' ' || *r->at == '\t' || *r->at == '\n' || *r->at == '\r')) r->at++;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(Reader *r, uint32_t *value) {
    if (r->end - r->at < 4) return 0;
    uint32_t result = 0;
    for (int i = 0; i < 4; i++) {
        int digit = hex_digit(r->at[i]);
        if (digit < 0) return 0;
        result = result << 4 | (uint32_t)digit;
    }
    r->at += 4;
    *value = result;
    return 1;
}

static int put_utf8(Out *out, uint32_t code) {
    uint8_t bytes[4];
    size_t size;
    if (code < 0x80) {
        bytes[0] = (uint8_t)code;
        size = 1;
    } else if (code < 0x800) {
        bytes[0] = (uint8_t)(0xc0 | code >> 6);
        bytes[1] = (uint8_t)(0x80 | (code & 0x3f));
        size = 2;
    } else if (code < 0x10000) {
        bytes[0] = (uint8_t)(0xe0 | code >> 12);
        bytes[1] = (uint8_t)(0x80 | ((code >> 6) & 0x3f));
        bytes[2] = (uint8_t)(0x80 | (code & 0x3f));
        size = 3;
    } else {
        bytes[0] = (uint8_t)(0xf0 | code >> 18);
        bytes[1] = (uint8_t)(0x80 | ((code >> 12) & 0x3f));
        bytes[2] = (uint8_t)(0x80 | ((code >> 6) & 0x3f));
        bytes[3] = (uint8_t)(0x80 | (code & 0x3f));
        size = 4;
    }
    return put(out, bytes, size);
}

/* The length of the well-formed UTF-8 sequence at `at` (no overlong forms, surrogates or values past U+10FFFF), or 0. */
static int utf8_sequence(const uint8_t *at, const uint8_t *end) {
    uint8_t c = at[0];
    int size;
    uint8_t low = 0x80, high = 0xbf;
    if (c < 0xc2) return 0; /* continuation bytes and overlong 2-byte forms */
    if (c < 0xe0) size = 2;
    else if (c < 0xf0) {
        size = 3;
        if (c == 0xe0) low = 0xa0;
        if (c == 0xed) high = 0x9f; /* surrogates */
    } else if (c < 0xf5) {
        size = 4;
        if (c == 0xf0) low = 0x90;
        if (c == 0xf4) high = 0x8f;
    } else {
        return 0;
    }
    if (end - at < size || at[1] < low || at[1] > high) return 0;
    for (int i = 2; i < size; i++) {
        if (at[i] < 0x80 || at[i] > 0xbf) return 0;
    }
    return size;
}

/* A JSON string into r->text, decoded to UTF-8. */
static Outcome read_string(Reader *r) {
    r->text.size = 0;
    if (r->at >= r->end || *r->at != '"') return GIVE_UP;
    r->at++;
    for (;;) {
        const uint8_t *run = r->at;
        while (r->at < r->end && *r->at != '"' && *r->at != '\\' && *r->at >= 0x20 && *r->at < 0x80) r->at++;
        if (r->at > run && !put(&r->text, run, (size_t)(r->at - run))) return NO_MEMORY;
        if (r->at >= r->end) return GIVE_UP;
        uint8_t c = *r->at;
        if (c == '"') {
            r->at++;
            return OK;
        }
        if (c < 0x20) return GIVE_UP; /* a raw control character: not JSON */
        if (c >= 0x80) {
            int size = utf8_sequence(r->at, r->end);
            if (size == 0) return GIVE_UP;
            if (!put(&r->text, r->at, (size_t)size)) return NO_MEMORY;
            r->at += size;
            continue;
        }
        /* an escape */
        if (r->end - r->at < 2) return GIVE_UP;
        uint8_t escaped = r->at[1];
        r->at += 2;
        char plain;
        switch (escaped) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
            uint32_t code, low;
            if (!read_hex4(r, &code)) return GIVE_UP;
            if (code >= 0xdc00 && code <= 0xdfff) return GIVE_UP; /* a lone low surrogate */
            if (code >= 0xd800 && code <= 0xdbff) {
                if (r->end - r->at < 2 || r->at[0] != '\\' || r->at[1] != 'u') return GIVE_UP;
                r->at += 2;
                if (!read_hex4(r, &low) || low < 0xdc00 || low > 0xdfff) return GIVE_UP;
                code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
            }
            if (!put_utf8(&r->text, code)) return NO_MEMORY;
            continue;
        }
        default: return GIVE_UP;
        }
        if (!put(&r->text, &plain, 1)) return NO_MEMORY;
    }
}

/* A JSON number's text: [start, end) and whether it is an integer (no fraction, no exponent). */
static int scan_number(Reader *r, const uint8_t **start, int *integer) {
    const uint8_t *at = r->at;
    *start = at;
    *integer = 1;
    if (at < r->end && *at == '-') at++;
    if (at >= r->end) return 0;
    if (*at == '0') {
        at++;
    } else if (*at >= '1' && *at <= '9') {
        while (at < r->end && *at >= '0' && *at <= '9') at++;
    } else {
        return 0;
    }
    if (at < r->end && *at == '.') {
        *integer = 0;
        at++;
        if (at >= r->end || *at < '0' || *at > '9') return 0;
        while (at < r->end && *at >= '0' && *at <= '9') at++;
    }
    if (at < r->end && (*at == 'e' || *at == 'E')) {
        *integer = 0;
        at++;
        if (at < r->end && (*at == '+' || *at == '-')) at++;
        if (at >= r->end || *at < '0' || *at > '9') return 0;
        while (at < r->end && *at >= '0' && *at <= '9') at++;
    }
    r->at = at;
    return 1;
}

/*
 * A number's text as a double, correctly rounded as Python's float() rounds it; 0 when not finite.
 * An integer reads as a Python int first, which has no negative zero: "-0" is 0.0.
 */
static int text_to_double(const uint8_t *start, size_t size, int integer, double *value) {
    char buffer[64];
    char *text = size < sizeof buffer ? buffer : PyMem_Malloc(size + 1);
    if (text == NULL) return 0;
    memcpy(text, start, size);
    text[size] = '\0';
    char *end;
    *value = PyOS_string_to_double(text, &end, NULL);
    int ok = !PyErr_Occurred() && end == text + size && isfinite(*value);
    PyErr_Clear();
    if (integer && *value == 0) *value = 0.0;
    if (text != buffer) PyMem_Free(text);
    return ok;
}

/* Decimal digits (an optional minus first) as an integer within [low, high]; 0 when out of range. */
static int digits_to_integer(const uint8_t *at, size_t size, int64_t low, uint64_t high, int64_t *value) {
    int negative = size > 0 && at[0] == '-';
    if (negative) {
        at++;
        size--;
    }
    if (size == 0 || size > 20) return 0;
    uint64_t magnitude = 0;
    for (size_t i = 0; i < size; i++) {
        if (at[i] < '0' || at[i] > '9') return 0;
        uint64_t digit = at[i] - '0';
        if (magnitude > (UINT64_MAX - digit) / 10) return 0;
        magnitude = magnitude * 10 + digit;
    }
    if (negative) {
        if (low >= 0 ? magnitude != 0 : magnitude > (uint64_t)(-(low + 1)) + 1) return 0;
        *value = magnitude == 0 ? 0 : (int64_t)(0 - magnitude);
        return 1;
    }
    if (magnitude > high) return 0;
    *value = (int64_t)magnitude;
    return 1;
}

/* The canonical integer strings protojson_reader takes: -?(0|[1-9][0-9]{0,19}). */
static int canonical_integer(const uint8_t *at, size_t size) {
    size_t i = size > 0 && at[0] == '-' ? 1 : 0;
    if (i >= size || size - i > 20) return 0;
    if (at[i] == '0') return size - i == 1;
    for (; i < size; i++) {
        if (at[i] < '0' || at[i] > '9') return 0;
    }
    return 1;
}

static Outcome read_value(Reader *r, const Field *field, int kind, Out *out, uint32_t number, long budget);

static int days_in_month(int64_t year, int month) {
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t year, int month, int day) {
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static int two_digits(const uint8_t *at, int *value) {
    if (at[0] < '0' || at[0] > '9' || at[1] < '0' || at[1] > '9') return 0;
    *value = (at[0] - '0') * 10 + (at[1] - '0');
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z, a real date and time (as datetime checks it), as a Timestamp's fields. */
static Outcome put_timestamp(const Out *text, Out *out) {
    const uint8_t *s = text->data;
    size_t size = text->size;
    int century, year_low, month, day, hour, minute, second;
    if (size < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return GIVE_UP;
    if (!two_digits(s, &century) || !two_digits(s + 2, &year_low) || !two_digits(s + 5, &month)
        || !two_digits(s + 8, &day) || !two_digits(s + 11, &hour) || !two_digits(s + 14, &minute)
        || !two_digits(s + 17, &second)) {
        return GIVE_UP;
    }
    int64_t year = century * 100 + year_low;
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23
        || minute > 59 || second > 59) {
        return GIVE_UP;
    }
    int64_t nanos = 0;
    size_t at = 19;
    if (s[at] == '.') {
        size_t digits = 0;
        at++;
        while (at < size && s[at] >= '0' && s[at] <= '9' && digits < 10) {
            nanos = nanos * 10 + (s[at] - '0');
            at++;
            digits++;
        }
        if (digits == 0 || digits > 9) return GIVE_UP;
        for (; digits < 9; digits++) nanos *= 10;
    }
    if (at + 1 != size || s[at] != 'Z') return GIVE_UP;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    int ok = (seconds == 0 || (put_tag(out, 1, VARINT) && put_varint(out, (uint64_t)seconds)))
             && (nanos == 0 || (put_tag(out, 2, VARINT) && put_varint(out, (uint64_t)nanos)));
    return ok ? OK : NO_MEMORY;
}

/* Reads the next JSON value into a nested buffer, then writes it as field `number` of `out`. */
static Outcome read_nested(Reader *r, const Field *field, int kind, Out *out, uint32_t number, long budget) {
    Out nested = {0};
    Outcome outcome = read_value(r, field, kind, &nested, 0, budget);
    if (outcome == OK && !put_delimited(out, number, nested.data ? nested.data : (const uint8_t *)"", nested.size)) {
        outcome = NO_MEMORY;
    }
    PyMem_Free(nested.data);
    return outcome;
}

static Outcome read_struct_value(Reader *r, Out *value, long budget);

/* After an object's '{': whether it is empty (its '}' then read). */
static int empty_object(Reader *r) {
    skip_space(r);
    if (r->at < r->end && *r->at == '}') {
        r->at++;
        return 1;
    }
    return 0;
}

/*
 * A member's key into r->text, and the colon after it. With `keys` (a Struct's or a map's
 * object), a key given before in the object gives up, as json_format refuses it; each key is
 * listed in `keys` as its size and bytes, and compared with every earlier one (at most MAX_KEYS).
 */
static Outcome read_key(Reader *r, Out *keys, int *count) {
    skip_space(r);
    Outcome outcome = read_string(r);
    if (outcome != OK) return outcome;
    if (keys != NULL) {
        if (++*count > MAX_KEYS) return GIVE_UP;
        for (size_t at = 0; at < keys->size;) {
            size_t size;
            memcpy(&size, keys->data + at, sizeof size);
            at += sizeof size;
            if (size == r->text.size && memcmp(keys->data + at, r->text.data, size) == 0) return GIVE_UP;
            at += size;
        }
        size_t size = r->text.size;
        if (!put(keys, &size, sizeof size) || !put(keys, r->text.data, size)) return NO_MEMORY;
    }
    skip_space(r);
    if (r->at >= r->end || *r->at != ':') return GIVE_UP;
    r->at++;
    skip_space(r);
    return OK;
}

/* After a member's value: a comma (*more set) or the object's end. */
static Outcome member_end(Reader *r, int *more) {
    skip_space(r);
    if (r->at < r->end && (*r->at == ',' || *r->at == '}')) {
        *more = *r->at++ == ',';
        return OK;
    }
    return GIVE_UP;
}

/* A JSON object as a Struct's fields (entries of field 1), as protojson_reader._struct checks it. */
static Outcome read_struct(Reader *r, Out *out, long budget) {
    if (budget < 1) return GIVE_UP; /* too deep: the Python path raises NestedTooDeep */
    if (r->at >= r->end || *r->at != '{') return GIVE_UP;
    if (++r->depth > MAX_JSON_DEPTH) return GIVE_UP;
    r->at++;
    Out entry = {0}, value = {0}, keys = {0};
    Outcome outcome = OK;
    int count = 0, more = !empty_object(r);
    while (more) {
        if ((outcome = read_key(r, &keys, &count)) != OK) break;
        entry.size = value.size = 0;
        if (!put_delimited(&entry, 1, r->text.data, r->text.size)) {
            outcome = NO_MEMORY;
            break;
        }
        if ((outcome = read_struct_value(r, &value, budget - 2)) != OK) break; /* an entry, then its Value */
        if (!put_delimited(&entry, 2, value.data ? value.data : (const uint8_t *)"", value.size)
            || !put_delimited(out, 1, entry.data, entry.size)) {
            outcome = NO_MEMORY;
            break;
        }
        if ((outcome = member_end(r, &more)) != OK) break;
    }
    PyMem_Free(entry.data);
    PyMem_Free(value.data);
    PyMem_Free(keys.data);
    r->depth--;
    return outcome;
}

/* A JSON value as a google.protobuf.Value's fields, as protojson_reader._struct_value reads it. */
static Outcome read_struct_value(Reader *r, Out *value, long budget) {
    if (budget < 1) return GIVE_UP;
    if (r->at >= r->end) return GIVE_UP;
    uint8_t c = *r->at;
    if (c == '"') {
        Outcome outcome = read_string(r);
        if (outcome != OK) return outcome;
        return put_delimited(value, 3, r->text.data, r->text.size) ? OK : NO_MEMORY;
    }
    if (c == 't' || c == 'f' || c == 'n') {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t size = strlen(word);
        if ((size_t)(r->end - r->at) < size || memcmp(r->at, word, size) != 0) return GIVE_UP;
        r->at += size;
        if (c == 'n') return put_tag(value, 1, VARINT) && put_varint(value, 0) ? OK : NO_MEMORY;
        return put_tag(value, 4, VARINT) && put_varint(value, c == 't') ? OK : NO_MEMORY;
    }
    if (c == '{') {
        Out nested = {0};
        Outcome outcome = read_struct(r, &nested, budget - 1);
        if (outcome == OK && !put_delimited(value, 5, nested.data ? nested.data : (const uint8_t *)"", nested.size)) {
            outcome = NO_MEMORY;
        }
        PyMem_Free(nested.data);
        return outcome;
    }
    if (c == '[') {
        if (budget < 2) return GIVE_UP;
        if (++r->depth > MAX_JSON_DEPTH) return GIVE_UP;
        r->at++;
        Out list = {0}, item = {0};
        Outcome outcome = OK;
        skip_space(r);
        if (r->at < r->end && *r->at == ']') {
            r->at++;
        } else {
            for (;;) {
                skip_space(r);
                item.size = 0;
                if ((outcome = read_struct_value(r, &item, budget - 2)) != OK) break;
                if (!put_delimited(&list, 1, item.data ? item.data : (const uint8_t *)"", item.size)) {
                    outcome = NO_MEMORY;
                    break;
                }
                skip_space(r);
                if (r->at < r->end && *r->at == ',') {
                    r->at++;
                    continue;
                }
                if (r->at < r->end && *r->at == ']') {
                    r->at++;
                    break;
                }
                outcome = GIVE_UP;
                break;
            }
        }
        if (outcome == OK && !put_delimited(value, 6, list.data ? list.data : (const uint8_t *)"", list.size)) {
            outcome = NO_MEMORY;
        }
        PyMem_Free(list.data);
        PyMem_Free(item.data);
        r->depth--;
        return outcome;
    }
    const uint8_t *start;
    int integer;
    double number;
    if (!scan_number(r, &start, &integer) || !text_to_double(start, (size_t)(r->at - start), integer, &number)) {
        return GIVE_UP;
    }
    return put_double(value, 2, number) ? OK : NO_MEMORY;
}

/* A JSON object as a message of `type`'s fields. */
static Outcome read_message(Reader *r, int type, Out *out, long budget) {
    const MessageType *message = &r->schema->types[type];
    if (r->at >= r->end || *r->at != '{') return GIVE_UP;
    if (++r->depth > MAX_JSON_DEPTH) return GIVE_UP;
    r->at++;
    uint64_t seen = 0;
    Outcome outcome = OK;
    int more = !empty_object(r);
    while (more) {
        if ((outcome = read_key(r, NULL, NULL)) != OK) break;
        const Field *field = NULL;
        for (int i = 0; i < message->count; i++) {
            const Field *candidate = &message->fields[i];
            if (candidate->name_size == (Py_ssize_t)r->text.size
                && memcmp(candidate->name, r->text.data, r->text.size) == 0) {
                field = candidate;
                break;
            }
        }
        /* unknown, given twice (under one name or both), or a kind this does not read */
        if (field == NULL || seen & (1ull << field->index) || field->kind == GIVE_UP_KIND) {
            outcome = GIVE_UP;
            break;
        }
        seen |= 1ull << field->index;
        if ((outcome = read_value(r, field, field->kind, out, field->number, budget)) != OK) break;
        if ((outcome = member_end(r, &more)) != OK) break;
    }
    r->depth--;
    return outcome;
}

/* A JSON object as a map field's entries (key 1, value 2), each value of the field's value kind. */
static Outcome read_map(Reader *r, const Field *field, Out *out, long budget) {
    if (r->at >= r->end || *r->at != '{') return GIVE_UP;
    r->at++;
    Out entry = {0}, keys = {0};
    Outcome outcome = OK;
    int count = 0, more = !empty_object(r);
    while (more) {
        if ((outcome = read_key(r, &keys, &count)) != OK) break;
        entry.size = 0;
        if (!put_delimited(&entry, 1, r->text.data, r->text.size)) {
            outcome = NO_MEMORY;
            break;
        }
        if ((outcome = read_value(r, field, field->value_kind, &entry, 2, budget)) != OK) break;
        if (!put_delimited(out, field->number, entry.data, entry.size)) {
            outcome = NO_MEMORY;
            break;
        }
        if ((outcome = member_end(r, &more)) != OK) break;
    }
    PyMem_Free(entry.data);
    PyMem_Free(keys.data);
    return outcome;
}

/*
 * The next JSON value, of `kind`, written as field `number` of `out` (0: a nested message's
 * body, written as it is).
 */
static Outcome read_value(Reader *r, const Field *field, int kind, Out *out, uint32_t number, long budget) {
    if (r->at >= r->end) return GIVE_UP;
    uint8_t c = *r->at;
    switch (kind) {
    case STRING: {
        Outcome outcome = read_string(r);
        if (outcome != OK) return outcome;
        return put_delimited(out, number, r->text.data, r->text.size) ? OK : NO_MEMORY;
    }
    case BOOL:
        if (c == 't' && r->end - r->at >= 4 && memcmp(r->at, "true", 4) == 0) {
            r->at += 4;
            return put_tag(out, number, VARINT) && put_varint(out, 1) ? OK : NO_MEMORY;
        }
        if (c == 'f' && r->end - r->at >= 5 && memcmp(r->at, "false", 5) == 0) {
            r->at += 5;
            return put_tag(out, number, VARINT) && put_varint(out, 0) ? OK : NO_MEMORY;
        }
        return GIVE_UP;
    case DOUBLE: {
        const uint8_t *start;
        int integer;
        double value;
        if (!scan_number(r, &start, &integer) || !text_to_double(start, (size_t)(r->at - start), integer, &value)) {
            return GIVE_UP;
        }
        return put_double(out, number, value) ? OK : NO_MEMORY;
    }
    case INT32: case INT64: case UINT32: case UINT64: {
        const uint8_t *start;
        size_t size;
        int integer;
        if (c == '"') {
            if (kind == INT32 || kind == UINT32) return GIVE_UP; /* only 64-bit integers come as strings */
            Outcome outcome = read_string(r);
            if (outcome != OK) return outcome;
            if (!canonical_integer(r->text.data, r->text.size)) return GIVE_UP;
            start = r->text.data;
            size = r->text.size;
        } else {
            if (!scan_number(r, &start, &integer)) return GIVE_UP;
            size = (size_t)(r->at - start); /* a fraction or an exponent is not digits: given up below */
        }
        int64_t low = kind == INT32 ? INT32_MIN : kind == INT64 ? INT64_MIN : 0;
        uint64_t high = kind == INT32 ? INT32_MAX : kind == INT64 ? INT64_MAX : kind == UINT32 ? UINT32_MAX
                                                                                                 : UINT64_MAX;
        int64_t value;
        if (!digits_to_integer(start, size, low, high, &value)) return GIVE_UP;
        /* int32 and int64 negatives are ten-byte varints, as protobuf writes them */
        return put_tag(out, number, VARINT) && put_varint(out, (uint64_t)value) ? OK : NO_MEMORY;
    }
    case TIMESTAMP: {
        Outcome outcome = read_string(r);
        if (outcome != OK) return outcome;
        Out body = {0};
        outcome = put_timestamp(&r->text, &body);
        if (outcome == OK && !put_delimited(out, number, body.data ? body.data : (const uint8_t *)"", body.size)) {
            outcome = NO_MEMORY;
        }
        PyMem_Free(body.data);
        return outcome;
    }
    case STRUCT:
        if (number == 0) return read_struct(r, out, budget);
        return read_nested(r, field, kind, out, number, budget);
    case MESSAGE:
        if (number == 0) return read_message(r, field->message, out, budget);
        return read_nested(r, field, kind, out, number, budget);
    case MAP:
        return read_map(r, field, out, budget);
    default:
        return GIVE_UP;
    }
}

/* ---- the Python interface ---- */

static void free_schema(PyObject *capsule) {
    Schema *schema = PyCapsule_GetPointer(capsule, "protojson_wire.schema");
    if (schema == NULL) return;
    for (int t = 0; t < schema->count; t++) {
        for (int f = 0; f < schema->types[t].count; f++) PyMem_Free(schema->types[t].fields[f].name);
        PyMem_Free(schema->types[t].fields);
    }
    PyMem_Free(schema->types);
    PyMem_Free(schema);
}

/* schema(types): each type a list of (key, index, number, kind, value_kind, message) tuples. */
static PyObject *schema(PyObject *module, PyObject *types) {
    (void)module;
    if (!PyList_Check(types)) return PyErr_Format(PyExc_TypeError, "schema() takes a list of types");
    Schema *result = PyMem_Calloc(1, sizeof(Schema));
    if (result == NULL) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(result, "protojson_wire.schema", free_schema);
    if (capsule == NULL) {
        PyMem_Free(result);
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(types);
    result->types = PyMem_Calloc((size_t)(count ? count : 1), sizeof(MessageType));
    if (result->types == NULL) {
        Py_DECREF(capsule);
        return PyErr_NoMemory();
    }
    result->count = (int)count;
    for (Py_ssize_t t = 0; t < count; t++) {
        PyObject *fields = PyList_GET_ITEM(types, t);
        if (!PyList_Check(fields)) {
            Py_DECREF(capsule);
            return PyErr_Format(PyExc_TypeError, "type %zd: a list of fields", t);
        }
        Py_ssize_t size = PyList_GET_SIZE(fields);
        MessageType *type = &result->types[t];
        type->fields = PyMem_Calloc((size_t)(size ? size : 1), sizeof(Field));
        if (type->fields == NULL) {
            Py_DECREF(capsule);
            return PyErr_NoMemory();
        }
        for (Py_ssize_t f = 0; f < size; f++) {
            Field *field = &type->fields[f];
            const char *name;
            Py_ssize_t name_size;
            unsigned long number;
            if (!PyArg_ParseTuple(PyList_GET_ITEM(fields, f), "s#ikiii", &name, &name_size, &field->index, &number,
                                  &field->kind, &field->value_kind, &field->message)) {
                Py_DECREF(capsule);
                return NULL;
            }
            if (field->index < 0 || field->index >= MAX_FIELDS || number == 0 || number > 0x1fffffff
                || ((field->kind == MESSAGE || field->value_kind == MESSAGE)
                    && (field->message < 0 || field->message >= count))) {
                Py_DECREF(capsule);
                return PyErr_Format(PyExc_ValueError, "type %zd, field %zd: out of range", t, f);
            }
            field->number = (uint32_t)number;
            field->name = PyMem_Malloc((size_t)name_size + 1);
            if (field->name == NULL) {
                Py_DECREF(capsule);
                return PyErr_NoMemory();
            }
            memcpy(field->name, name, (size_t)name_size + 1);
            field->name_size = name_size;
            type->count = (int)f + 1;
        }
    }
    return capsule;
}

static PyObject *wire_bytes(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *capsule;
    Py_buffer line;
    int type;
    long max_depth;
    if (!PyArg_ParseTuple(args, "Oy*il:wire_bytes", &capsule, &line, &type, &max_depth)) return NULL;
    const Schema *schema = PyCapsule_GetPointer(capsule, "protojson_wire.schema");
    if (schema == NULL || type < 0 || type >= schema->count) {
        PyBuffer_Release(&line);
        return schema == NULL ? NULL : PyErr_Format(PyExc_ValueError, "no message type %d", type);
    }
    Reader reader = {line.buf, (const uint8_t *)line.buf + line.len, schema, {0}, 0};
    Out out = {0};
    skip_space(&reader);
    Outcome outcome = read_message(&reader, type, &out, max_depth);
    if (outcome == OK) {
        skip_space(&reader);
        if (reader.at != reader.end) outcome = GIVE_UP; /* more than one value */
    }
    PyBuffer_Release(&line);
    PyObject *result = NULL;
    switch (outcome) {
    case OK: result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)out.size); break;
    case GIVE_UP: result = Py_NewRef(Py_NotImplemented); break;
    case NO_MEMORY: PyErr_NoMemory(); break;
    }
    PyMem_Free(out.data);
    PyMem_Free(reader.text.data);
    return result;
}

static PyMethodDef methods[] = {
    {"schema", schema, METH_O, "schema(types) -> capsule: message types as telemetry_export.protojson_wire lists them."},
    {"wire_bytes", wire_bytes, METH_VARARGS,
     "wire_bytes(schema, line, type, max_depth) -> bytes | NotImplemented\n\n"
     "The wire bytes of the message of `type` that the protojson `line` (UTF-8 bytes) holds, or\n"
     "NotImplemented when the line is not in the plain forms read here."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_protojson_wire", "Plain protojson lines straight to wire bytes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__protojson_wire(void) { return PyModule_Create(&module); }
