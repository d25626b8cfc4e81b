// Launcher of the SparseInvertedResidual plugin: maps TensorRT tensors onto the shared kernels
// in sparse_pose_ros/sparse/kernels (the same sources the torch extension compiles).
#ifndef SPARSE_POSE_ROS_SPARSE_INVERTED_RESIDUAL_KERNEL_H
#define SPARSE_POSE_ROS_SPARSE_INVERTED_RESIDUAL_KERNEL_H

#include "NvInferRuntime.h"
#include "sparse_block.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace sparse_pose_ros
{
namespace plugin
{

// Tensor positions (inputs, then the output at kNB_INPUTS + kY_IDX in supportsFormatCombination).
constexpr int32_t kX_IDX = 0;        //!< (B, C, H, W) fp32|fp16
constexpr int32_t kMASK_IDX = 1;     //!< (B, 1, Ho, Wo) fp32|fp16, 0/1
constexpr int32_t kW_EXPAND_IDX = 2; //!< (Ce, C) fp32; 1-element placeholder without expand
constexpr int32_t kB_EXPAND_IDX = 3; //!< (Ce) fp32
constexpr int32_t kW_DW_IDX = 4;     //!< (Ce, 9) fp32
constexpr int32_t kB_DW_IDX = 5;     //!< (Ce) fp32
constexpr int32_t kW_PROJ_IDX = 6;   //!< (Co, Ce) fp32
constexpr int32_t kB_PROJ_IDX = 7;   //!< (Co) fp32
constexpr int32_t kNB_INPUTS = 8;
constexpr int32_t kY_IDX = 0; //!< (B, Co, Ho, Wo), type of X
constexpr int32_t kNB_OUTPUTS = 1;

//! Enqueue one block. `inputs` are the plugin's 8 input pointers in the order above; `shape`
//! carries every field the kernels read (stride, padBefore, hasExpand, residual), so a new
//! field reaches the kernels through blockShape() without changing this signature.
cudaError_t sparseInvertedResidualLaunch(SparseBlockShape const& shape, nvinfer1::DataType type,
    void const* const* inputs, void* output, void* workspace, cudaStream_t stream) noexcept;

} // namespace plugin
} // namespace sparse_pose_ros

#endif // SPARSE_POSE_ROS_SPARSE_INVERTED_RESIDUAL_KERNEL_H
