/* config.c — placeholder */
#include "gateway/config.h"
