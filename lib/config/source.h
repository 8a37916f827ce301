/* SPDX-License-Identifier: MIT */
/*
 * lib/config/source.h - private: config sources other than a local file
 * (source_etcd.c), stopped by ureg_config_destroy (config.c).
 */
#ifndef UREG_CONFIG_SOURCE_H
#define UREG_CONFIG_SOURCE_H

#include "ureg/config.h"

/* Stops and frees every source of @cfg (ureg_config_etcd_stop). */
void ureg__config_sources_stop(ureg_config *cfg);

#endif /* UREG_CONFIG_SOURCE_H */
