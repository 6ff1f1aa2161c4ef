/* compress.c — placeholder, filled by the codec work */
#include "codec/qipc.h"
