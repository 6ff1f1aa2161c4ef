/* placeholder */
#include "tests/support/t_crit.h"
Test(gateway, placeholder) { cr_assert(t_bin("QGATE_BIN"), "%s", t_errmsg()); }
