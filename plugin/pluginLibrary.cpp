// Entry points TensorRT 10 looks up when it loads this library dynamically
// (IPluginRegistry::loadLibrary, trt.get_plugin_registry().load_library(path),
// trtexec --dynamicPlugins). Signatures as in TensorRT 10.3's own V3 plugin library
// (plugin/common/vfcCommon.h): getCreators for IPluginCreatorInterface creators and
// setLoggerFinder. The legacy getPluginCreators entry point returns IPluginV2 creators
// (IPluginCreator*), which this library does not have, so it is deliberately not exported.
#include "NvInferRuntime.h"

#include "common/pluginLogging.h"
#include "sparseInvertedResidualPlugin/sparseInvertedResidualPlugin.h"

// TENSORRTAPI only exports when TENSORRT_BUILD_LIB is defined (TensorRT's own build), and this
// library is compiled with hidden visibility, so the entry points are exported explicitly.
#if defined(_MSC_VER)
#define SPARSE_POSE_ROS_PLUGIN_API __declspec(dllexport)
#else
#define SPARSE_POSE_ROS_PLUGIN_API __attribute__((visibility("default")))
#endif

extern "C" SPARSE_POSE_ROS_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static sparse_pose_ros::plugin::SparseInvertedResidualPluginCreator sSparseInvertedResidualCreator;
    static nvinfer1::IPluginCreatorInterface* const kCREATORS[] = {&sSparseInvertedResidualCreator};
    nbCreators = static_cast<int32_t>(sizeof(kCREATORS) / sizeof(kCREATORS[0]));
    return kCREATORS;
}

extern "C" SPARSE_POSE_ROS_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    sparse_pose_ros::plugin::setPluginLoggerFinder(finder);
}
