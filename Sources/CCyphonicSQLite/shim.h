#ifndef CCYPHONIC_SQLITE_SHIM_H
#define CCYPHONIC_SQLITE_SHIM_H
#include <sqlite3.h>
#endif
