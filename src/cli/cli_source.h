/* cli_source.h: weight sources for the engine: the original safetensors, or a container (dequantized
 * on the fly). Layer: cli (the only place that sees both model/ and io_hdf5/). */
#ifndef WQ_CLI_SOURCE_H
#define WQ_CLI_SOURCE_H

#include "dist/dist_engine.h"
#include "io_hdf5/h5_container.h"
#include "model/st_reader.h"

wq_weight_source wq_source_safetensors(const wq_st_model *m);
wq_weight_source wq_source_container(const wq_h5_reader *r);

#endif
