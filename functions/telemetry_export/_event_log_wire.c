/*
 * An Event's event_logs COPY line, read straight from its wire bytes.
 *
 * telemetry_export.event_logs.log_line reads an Event field by field through protobuf's Python
 * objects: about forty crossings into C per event, and one Python object for every Struct
 * entry and Value, which made it more than half of what recording costs. Here the bytes that
 * SerializeToString gives are read in one pass and the line is written in one buffer. The rules
 * of the row are event_logs' own (see its module docstring); tests/test_event_log_wire.py holds
 * this reader to the Python translation, row for row.
 *
 * It reads only what SerializeToString writes. Anything else (a known field with another wire
 * type, a field given twice, a Value with two kinds, bytes that end early, text that is not
 * UTF-8) makes it give up: it returns NotImplemented and the Python translation decides.
 * Unknown field numbers are skipped, as the Python translation never reads them. Private
 * metadata that nests too deep returns None: the caller raises NestedTooDeep.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- reading the wire format ---- */

enum { VARINT = 0, FIXED64 = 1, LENGTH_DELIMITED = 2, FIXED32 = 5 };

typedef struct {
    const uint8_t *at, *end;
} Wire;

typedef struct {
    const uint8_t *data;
    Py_ssize_t size;
    int present;
} Slice;

/* Each returns 0 when the bytes are not what SerializeToString writes. */

static int read_varint(Wire *w, uint64_t *value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->at >= w->end) return 0;
        uint8_t byte = *w->at++;
        result |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = result;
            return 1;
        }
    }
    return 0;
}

static int read_tag(Wire *w, uint32_t *number, int *wire_type) {
    uint64_t tag;
    if (!read_varint(w, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return 0;
    *number = (uint32_t)(tag >> 3);
    *wire_type = (int)(tag & 7);
    return 1;
}

static int read_slice(Wire *w, Slice *slice) {
    uint64_t size;
    if (!read_varint(w, &size) || size > (uint64_t)(w->end - w->at)) return 0;
    slice->data = w->at;
    slice->size = (Py_ssize_t)size;
    slice->present = 1;
    w->at += size;
    return 1;
}

static int read_fixed64(Wire *w, double *value) {
    if (w->end - w->at < 8) return 0;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) bits = (bits << 8) | w->at[i];
    memcpy(value, &bits, sizeof bits);
    w->at += 8;
    return 1;
}

static int skip(Wire *w, int wire_type) {
    uint64_t ignored;
    Slice slice;
    switch (wire_type) {
    case VARINT: return read_varint(w, &ignored);
    case FIXED64: if (w->end - w->at < 8) return 0; w->at += 8; return 1;
    case LENGTH_DELIMITED: return read_slice(w, &slice);
    case FIXED32: if (w->end - w->at < 4) return 0; w->at += 4; return 1;
    default: return 0; /* groups: never written for these messages */
    }
}

static Wire wire_of(const Slice *slice) {
    Wire w = {slice->data, slice->data + slice->size};
    return w;
}

/*
 * The next occurrence of the length-delimited field `field` (a repeated message: list values,
 * Struct entries, map entries) into `slice`, other fields skipped: 1, or 0 at the end, or -1
 * when the bytes are not what SerializeToString writes.
 */
static int next_delimited(Wire *w, uint32_t field, Slice *slice) {
    while (w->at < w->end) {
        uint32_t number;
        int wire_type;
        if (!read_tag(w, &number, &wire_type)) return -1;
        if (number != field) {
            if (!skip(w, wire_type)) return -1;
            continue;
        }
        return wire_type == LENGTH_DELIMITED && read_slice(w, slice) ? 1 : -1;
    }
    return 0;
}

/*
 * The string or message fields 1..count of a message, into `fields` (absent ones stay absent);
 * fields above `count` are skipped, whatever their type.
 */
static int read_slices(const Slice *message, Slice *fields, int count) {
    Wire w = wire_of(message);
    memset(fields, 0, sizeof(Slice) * (size_t)count);
    while (w.at < w.end) {
        uint32_t number;
        int wire_type;
        if (!read_tag(&w, &number, &wire_type)) return 0;
        if (number > (uint32_t)count) {
            if (!skip(&w, wire_type)) return 0;
            continue;
        }
        Slice *field = &fields[number - 1];
        if (wire_type != LENGTH_DELIMITED || field->present) return 0;
        if (!read_slice(&w, field)) return 0;
    }
    return 1;
}

/* ---- writing the line ---- */

typedef struct {
    char *data;
    size_t size, capacity;
} Out;

static int grow(Out *out, size_t more) {
    if (out->size + more <= out->capacity) return 1;
    size_t capacity = out->capacity * 2;
    if (capacity < out->size + more) capacity = out->size + more;
    char *data = PyMem_Realloc(out->data, capacity);
    if (data == NULL) return 0;
    out->data = data;
    out->capacity = capacity;
    return 1;
}

static int put(Out *out, const char *data, size_t size) {
    if (!grow(out, size)) return 0;
    memcpy(out->data + out->size, data, size);
    out->size += size;
    return 1;
}

#define PUT_LITERAL(out, text) put((out), (text), sizeof(text) - 1)

static const char REPLACEMENT[] = "\xef\xbf\xbd"; /* U+FFFD: Postgres text holds no NUL */

/* Text as a COPY text column: its escapes, and NUL replaced. */
static int put_text(Out *out, const uint8_t *text, Py_ssize_t size) {
    if (!grow(out, (size_t)size * 3)) return 0;
    char *to = out->data + out->size;
    for (Py_ssize_t i = 0; i < size; i++) {
        uint8_t c = text[i];
        switch (c) {
        case '\\': *to++ = '\\'; *to++ = '\\'; break;
        case '\t': *to++ = '\\'; *to++ = 't'; break;
        case '\n': *to++ = '\\'; *to++ = 'n'; break;
        case '\r': *to++ = '\\'; *to++ = 'r'; break;
        case 0: memcpy(to, REPLACEMENT, 3); to += 3; break;
        default: *to++ = (char)c;
        }
    }
    out->size = (size_t)(to - out->data);
    return 1;
}

static int put_optional_text(Out *out, const Slice *text) {
    return text->present ? put_text(out, text->data, text->size) : PUT_LITERAL(out, "\\N");
}

/*
 * A JSON string inside a COPY text column: JSON's escapes, each backslash doubled for COPY.
 * Control characters are escaped by JSON, so no raw tab or newline reaches COPY; NUL becomes
 * U+FFFD, as in event_logs._dumps.
 */
static int put_json_string(Out *out, const uint8_t *text, Py_ssize_t size) {
    static const char hex[] = "0123456789abcdef";
    if (!grow(out, (size_t)size * 8 + 2)) return 0;
    char *to = out->data + out->size;
    *to++ = '"';
    for (Py_ssize_t i = 0; i < size; i++) {
        uint8_t c = text[i];
        if (c == '"') {
            *to++ = '\\'; *to++ = '\\'; *to++ = '"';
        } else if (c == '\\') {
            memcpy(to, "\\\\\\\\", 4); to += 4;
        } else if (c == 0) {
            memcpy(to, REPLACEMENT, 3); to += 3;
        } else if (c < 0x20) {
            memcpy(to, "\\\\u00", 5); to += 5;
            *to++ = hex[c >> 4];
            *to++ = hex[c & 15];
        } else {
            *to++ = (char)c;
        }
    }
    *to++ = '"';
    out->size = (size_t)(to - out->data);
    return 1;
}

/* A double as JSON: the shortest text that reads back the same, and null when not finite (orjson's rule). */
static int put_json_number(Out *out, double value) {
    if (!isfinite(value)) return PUT_LITERAL(out, "null");
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) return 0;
    int ok = put(out, text, strlen(text));
    PyMem_Free(text);
    return ok;
}

static int put_int64(Out *out, int64_t value) {
    char text[24];
    int size = snprintf(text, sizeof text, "%lld", (long long)value);
    return put(out, text, (size_t)size);
}

/* ---- the columns ---- */

typedef enum { DONE, GIVE_UP, TOO_DEEP, NO_MEMORY } Outcome;

static Outcome put_struct(Out *out, const Slice *fields, long budget);

/* One google.protobuf.Value, as event_logs._value: `budget` message levels left. */
static Outcome put_value(Out *out, const Slice *message, long budget) {
    if (budget < 1) return TOO_DEEP;
    Wire w = wire_of(message);
    int kind = 0; /* the field number of the kind set, 0 for none */
    uint64_t varint = 0;
    double number = 0;
    Slice slice = {0};
    while (w.at < w.end) {
        uint32_t field;
        int wire_type;
        if (!read_tag(&w, &field, &wire_type)) return GIVE_UP;
        if (field > 6) {
            if (!skip(&w, wire_type)) return GIVE_UP;
            continue;
        }
        if (kind != 0) return GIVE_UP; /* two kinds, or one twice: protobuf would merge them */
        kind = (int)field;
        int ok;
        switch (field) {
        case 1: case 4: ok = wire_type == VARINT && read_varint(&w, &varint); break;
        case 2: ok = wire_type == FIXED64 && read_fixed64(&w, &number); break;
        default: ok = wire_type == LENGTH_DELIMITED && read_slice(&w, &slice);
        }
        if (!ok) return GIVE_UP;
    }
    switch (kind) {
    case 2: return put_json_number(out, number) ? DONE : NO_MEMORY;
    case 3: return put_json_string(out, slice.data, slice.size) ? DONE : NO_MEMORY;
    case 4: return (varint ? PUT_LITERAL(out, "true") : PUT_LITERAL(out, "false")) ? DONE : NO_MEMORY;
    case 5: return put_struct(out, &slice, budget - 1);
    case 6: {
        if (budget < 2) return TOO_DEEP;
        /* ListValue: field 1, the values. */
        if (!PUT_LITERAL(out, "[")) return NO_MEMORY;
        Wire list = wire_of(&slice);
        Slice item;
        int first = 1, found;
        while ((found = next_delimited(&list, 1, &item)) == 1) {
            if (!first && !PUT_LITERAL(out, ",")) return NO_MEMORY;
            first = 0;
            Outcome outcome = put_value(out, &item, budget - 2);
            if (outcome != DONE) return outcome;
        }
        if (found < 0) return GIVE_UP;
        return PUT_LITERAL(out, "]") ? DONE : NO_MEMORY;
    }
    default: return PUT_LITERAL(out, "null") ? DONE : NO_MEMORY; /* null_value, or no kind */
    }
}

/* A google.protobuf.Struct as a JSON object, as event_logs._struct, with its depth checks. */
static Outcome put_struct(Out *out, const Slice *message, long budget) {
    if (budget < 1) return TOO_DEEP;
    if (!PUT_LITERAL(out, "{")) return NO_MEMORY;
    Wire w = wire_of(message);
    Slice entry;
    int first = 1, found;
    while ((found = next_delimited(&w, 1, &entry)) == 1) {
        Slice parts[2]; /* key, value */
        if (!read_slices(&entry, parts, 2)) return GIVE_UP;
        if (!first && !PUT_LITERAL(out, ",")) return NO_MEMORY;
        first = 0;
        if (!put_json_string(out, parts[0].data, parts[0].size) || !PUT_LITERAL(out, ":")) return NO_MEMORY;
        Outcome outcome = put_value(out, &parts[1], budget - 2);
        if (outcome != DONE) return outcome;
    }
    if (found < 0) return GIVE_UP;
    return PUT_LITERAL(out, "}") ? DONE : NO_MEMORY;
}

/* A map's entries (key field 1, a string; value field 2) as JSON members, after `*first`. */
typedef enum { INT64_AS_NUMBER, DOUBLE_AS_NUMBER, STRING } MapValue;

static const char MARKER[] = "telemetry.exportable"; /* event_logs.EXPORTABLE_MARKER */

static Outcome put_map_members(Out *out, const uint8_t *message, Py_ssize_t size, uint32_t field, MapValue kind,
                               int skip_marker, int *first) {
    Wire w = {message, message + size};
    Slice entry;
    int found;
    while ((found = next_delimited(&w, field, &entry)) == 1) {
        Wire e = wire_of(&entry);
        Slice key = {(const uint8_t *)"", 0, 0}, text = {(const uint8_t *)"", 0, 0};
        uint64_t varint = 0;
        double number_value = 0;
        int seen_key = 0, seen_value = 0;
        while (e.at < e.end) {
            uint32_t part;
            int part_type;
            if (!read_tag(&e, &part, &part_type)) return GIVE_UP;
            if (part == 1) {
                if (seen_key++ || part_type != LENGTH_DELIMITED || !read_slice(&e, &key)) return GIVE_UP;
            } else if (part == 2) {
                int ok;
                if (seen_value++) return GIVE_UP;
                switch (kind) {
                case INT64_AS_NUMBER: ok = part_type == VARINT && read_varint(&e, &varint); break;
                case DOUBLE_AS_NUMBER: ok = part_type == FIXED64 && read_fixed64(&e, &number_value); break;
                default: ok = part_type == LENGTH_DELIMITED && read_slice(&e, &text);
                }
                if (!ok) return GIVE_UP;
            } else if (!skip(&e, part_type)) {
                return GIVE_UP;
            }
        }
        /* The marker is written last, once, whatever the maps hold (the Python dict's last word). */
        if (skip_marker && key.size == sizeof(MARKER) - 1 && memcmp(key.data, MARKER, (size_t)key.size) == 0) {
            continue;
        }
        if (!*first && !PUT_LITERAL(out, ",")) return NO_MEMORY;
        *first = 0;
        if (!put_json_string(out, key.data, key.size) || !PUT_LITERAL(out, ":")) return NO_MEMORY;
        int ok;
        switch (kind) {
        case INT64_AS_NUMBER: ok = put_json_number(out, (double)(int64_t)varint); break;
        case DOUBLE_AS_NUMBER: ok = put_json_number(out, number_value); break;
        default: ok = put_json_string(out, text.data, text.size);
        }
        if (!ok) return NO_MEMORY;
    }
    return found < 0 ? GIVE_UP : DONE;
}

/* Event's fields by number (string or message fields read as slices; 1 id and 2 timestamp are not read). */
enum { FEATURE = 3, ACTION = 4, SOURCE = 5, PARAMETERS = 6, USER = 7, FEATURE_FLAGS = 8, MARKETING_TRACKING = 9 };
enum { EVENT_FIELDS = 9 };

static Outcome put_line(Out *out, const Slice *event, const char *event_id, Py_ssize_t event_id_size,
                        const char *timestamp, Py_ssize_t timestamp_size, int exportable, long max_depth) {
    Slice fields[EVENT_FIELDS];
    /* Event field 2 (timestamp) is a message, 1 (id) a string: both length-delimited, read and ignored. */
    if (!read_slices(event, fields, EVENT_FIELDS)) return GIVE_UP;
    Slice parameters[5] = {{0}}, source[2] = {{0}}, server[1] = {{0}}, client[2] = {{0}}, user_text[2] = {{0}},
          tracking[6] = {{0}}, billing[2] = {{0}};
    int64_t user_id = 0;
    if (fields[PARAMETERS - 1].present) {
        /* EventParameters: 1 version (int32), 2 legacy_metadata, 3 private_metadata, 4 billing, 5 metadata. */
        Wire w = wire_of(&fields[PARAMETERS - 1]);
        while (w.at < w.end) {
            uint32_t number;
            int wire_type;
            if (!read_tag(&w, &number, &wire_type)) return GIVE_UP;
            if (number == 1 || number > 5) {
                if (!skip(&w, wire_type)) return GIVE_UP;
                continue;
            }
            if (wire_type != LENGTH_DELIMITED) return GIVE_UP;
            Slice field;
            if (!read_slice(&w, &field)) return GIVE_UP;
            if (number == 2 || number == 5) {
                continue; /* map entries: read again below, where they are written */
            }
            if (parameters[number - 1].present) return GIVE_UP;
            parameters[number - 1] = field;
        }
        if (parameters[3].present && !read_slices(&parameters[3], billing, 2)) return GIVE_UP;
    }
    if (fields[SOURCE - 1].present) {
        if (!read_slices(&fields[SOURCE - 1], source, 2)) return GIVE_UP;
        if (source[0].present && !read_slices(&source[0], server, 1)) return GIVE_UP;
        if (source[1].present && !read_slices(&source[1], client, 2)) return GIVE_UP;
    }
    if (fields[USER - 1].present) {
        /* EventUser: 1 user_id (int64), 2 anonymous_user_id, 3 sams_external_id (not in the row). */
        Wire w = wire_of(&fields[USER - 1]);
        int seen_user_id = 0;
        while (w.at < w.end) {
            uint32_t number;
            int wire_type;
            if (!read_tag(&w, &number, &wire_type)) return GIVE_UP;
            if (number == 1) {
                uint64_t value;
                if (seen_user_id++ || wire_type != VARINT || !read_varint(&w, &value)) return GIVE_UP;
                user_id = (int64_t)value;
            } else if (number == 2) {
                if (user_text[1].present || wire_type != LENGTH_DELIMITED || !read_slice(&w, &user_text[1])) {
                    return GIVE_UP;
                }
            } else if (!skip(&w, wire_type)) {
                return GIVE_UP;
            }
        }
    }
    if (fields[MARKETING_TRACKING - 1].present && !read_slices(&fields[MARKETING_TRACKING - 1], tracking, 6)) {
        return GIVE_UP;
    }

    /* event_id, timestamp, name */
    if (!put_text(out, (const uint8_t *)event_id, event_id_size) || !PUT_LITERAL(out, "\t")
        || !put_text(out, (const uint8_t *)timestamp, timestamp_size) || !PUT_LITERAL(out, "\t")
        || !put_text(out, fields[FEATURE - 1].data, fields[FEATURE - 1].size) || !PUT_LITERAL(out, ".")
        || !put_text(out, fields[ACTION - 1].data, fields[ACTION - 1].size) || !PUT_LITERAL(out, "\t")
        /* url: the tracking's url, empty when there is none */
        || !put_text(out, tracking[0].data, tracking[0].size) || !PUT_LITERAL(out, "\t")
        || !put_int64(out, user_id) || !PUT_LITERAL(out, "\t")) {
        return NO_MEMORY;
    }
    int ok = user_text[1].present ? put_text(out, user_text[1].data, user_text[1].size)
                                  : PUT_LITERAL(out, "unknown"); /* event_logs.UNKNOWN_ANONYMOUS_USER */
    /* source: the client's name, BACKEND when there is none or it is empty */
    ok = ok && PUT_LITERAL(out, "\t")
         && (client[0].size ? put_text(out, client[0].data, client[0].size) : PUT_LITERAL(out, "BACKEND"))
         && PUT_LITERAL(out, "\t");
    if (!ok) return NO_MEMORY;

    /* argument: the private metadata */
    if (parameters[2].present) {
        Outcome outcome = put_struct(out, &parameters[2], max_depth);
        if (outcome != DONE) return outcome;
    } else if (!PUT_LITERAL(out, "\\N")) {
        return NO_MEMORY;
    }
    /* public_argument: legacy metadata as doubles, then metadata, then the marker */
    if (!PUT_LITERAL(out, "\t{")) return NO_MEMORY;
    int first = 1;
    if (fields[PARAMETERS - 1].present) {
        const Slice *p = &fields[PARAMETERS - 1];
        Outcome outcome = put_map_members(out, p->data, p->size, 2, INT64_AS_NUMBER, 1, &first);
        if (outcome == DONE) outcome = put_map_members(out, p->data, p->size, 5, DOUBLE_AS_NUMBER, 1, &first);
        if (outcome != DONE) return outcome;
    }
    ok = (first || PUT_LITERAL(out, ","))
         && (exportable ? PUT_LITERAL(out, "\"telemetry.exportable\":true}\t")
                        : PUT_LITERAL(out, "\"telemetry.exportable\":false}\t"))
         && put_text(out, server[0].data, server[0].size) && PUT_LITERAL(out, "\t");
    if (!ok) return NO_MEMORY;
    /* feature_flags */
    if (fields[FEATURE_FLAGS - 1].present) {
        const Slice *f = &fields[FEATURE_FLAGS - 1];
        int first_flag = 1;
        if (!PUT_LITERAL(out, "{")) return NO_MEMORY;
        Outcome outcome = put_map_members(out, f->data, f->size, 1, STRING, 0, &first_flag);
        if (outcome != DONE) return outcome;
        if (!PUT_LITERAL(out, "}")) return NO_MEMORY;
    } else if (!PUT_LITERAL(out, "\\N")) {
        return NO_MEMORY;
    }
    /* cohort_id, first_source_url, last_source_url, referrer, device_session_id (tracking fields 3, 2, 5, 4, 6) */
    static const int tracking_columns[] = {3, 2, 5, 4, 6};
    for (size_t i = 0; i < sizeof tracking_columns / sizeof tracking_columns[0]; i++) {
        if (!PUT_LITERAL(out, "\t") || !put_optional_text(out, &tracking[tracking_columns[i] - 1])) return NO_MEMORY;
    }
    /* billing_product_category: product:category */
    if (!PUT_LITERAL(out, "\t")) return NO_MEMORY;
    if (parameters[3].present) {
        ok = put_text(out, billing[0].data, billing[0].size) && PUT_LITERAL(out, ":")
             && put_text(out, billing[1].data, billing[1].size);
    } else {
        ok = PUT_LITERAL(out, "\\N");
    }
    /* client: name, or name and version */
    ok = ok && PUT_LITERAL(out, "\t");
    if (ok && source[1].present) {
        ok = put_text(out, client[0].data, client[0].size);
        if (ok && client[1].present) {
            ok = PUT_LITERAL(out, " ") && put_text(out, client[1].data, client[1].size);
        }
    } else if (ok) {
        ok = PUT_LITERAL(out, "\\N");
    }
    return ok ? DONE : NO_MEMORY;
}

static PyObject *log_line(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer event;
    const char *event_id, *timestamp;
    Py_ssize_t event_id_size, timestamp_size;
    int exportable;
    long max_depth;
    if (!PyArg_ParseTuple(args, "y*s#s#pl:log_line", &event, &event_id, &event_id_size, &timestamp,
                          &timestamp_size, &exportable, &max_depth)) {
        return NULL;
    }
    Out out = {PyMem_Malloc(1024), 0, 1024};
    if (out.data == NULL) {
        PyBuffer_Release(&event);
        return PyErr_NoMemory();
    }
    Slice message = {event.buf, event.len, 1};
    Outcome outcome = put_line(&out, &message, event_id, event_id_size, timestamp, timestamp_size, exportable,
                               max_depth);
    PyBuffer_Release(&event);
    PyObject *result = NULL;
    switch (outcome) {
    case DONE:
        result = PyUnicode_DecodeUTF8(out.data, (Py_ssize_t)out.size, "strict");
        if (result == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            result = Py_NewRef(Py_NotImplemented);
        }
        break;
    case GIVE_UP: result = Py_NewRef(Py_NotImplemented); break;
    case TOO_DEEP: result = Py_NewRef(Py_None); break;
    case NO_MEMORY: PyErr_NoMemory(); break;
    }
    PyMem_Free(out.data);
    return result;
}

static PyMethodDef methods[] = {
    {"log_line", log_line, METH_VARARGS,
     "log_line(event_bytes, event_id, timestamp, exportable, max_depth) -> str | None | NotImplemented\n\n"
     "The event_logs COPY line of an Event's wire bytes; None when private metadata nests deeper than\n"
     "max_depth message levels; NotImplemented when the bytes are not as SerializeToString writes them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_event_log_wire", "An Event's event_logs COPY line, read from its wire bytes.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__event_log_wire(void) { return PyModule_Create(&module); }
