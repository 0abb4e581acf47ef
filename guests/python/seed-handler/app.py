import json
import boto3

# 初始化 S3 客户端
s3_client = boto3.client('s3')

def lambda_handler(event, context):
    # 1. 获取触发事件的 S3 桶名和文件名
    bucket_name = event['Records'][0]['s3']['bucket']['name']
    file_key = event['Records'][0]['s3']['object']['key']
    
    print(f"开始处理文件: {file_key} 来自桶: {bucket_name}")
    
    # 2. (此处省略图片压缩/处理代码)
    
    # 3. 示例：可以修改文件元数据或通知其他服务
    return {
        'statusCode': 200,
        'body': json.dumps('图片处理完成!')
    }
